"""One verify path for every drafter: the pending token and the draft through the model in one pass, greedy
acceptance, the bonus token, and the cache rolled back to what was accepted.

With ``m`` rows in one pass the weights are read once for all of them, which is why checking ``k`` drafted tokens
costs little more than one plain step; an early-exit draft also skips the layers below its exit, whose keys and
values the drafter already wrote.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.spec.drafters import Draft
from engine.spec.runner import Runner


@dataclass(frozen=True)
class Verification:
    """``tokens`` are the ``accepted`` leading draft tokens followed by the model's own next token (the bonus), so
    one verification always yields ``accepted + 1`` tokens, and the last of them is the new pending token."""

    accepted: int
    tokens: list[int]


def verify_greedy(runner: Runner, position: int, pending: int, draft: Draft) -> Verification:
    """Verifies ``draft`` after ``pending`` (the token at ``position``, not yet in the cache), as described in
    :mod:`engine.spec.drafters`. Draft token ``i`` is accepted when it is the argmax of the logits at the row
    before it, for the longest such prefix; so in exact arithmetic the result is what greedy decoding would
    produce. Afterwards every layer of the cache holds exactly ``[0, position + accepted + 1)``.

    Raises ``ValueError`` for an exit layer out of range or more hidden rows than ``[pending] + draft.tokens``.
    """
    rows = [pending, *draft.tokens]
    exit_layer = draft.exit_layer
    if not 0 <= exit_layer <= runner.num_layers:
        raise ValueError(f"exit layer {exit_layer} is not in [0, {runner.num_layers}]")
    handed = 0 if draft.hidden is None else draft.hidden.shape[0]
    if handed > len(rows):
        raise ValueError(f"{handed} hidden rows for {len(rows)} tokens")
    if handed and exit_layer == 0:
        raise ValueError("hidden states handed over without an exit layer")
    hidden = draft.hidden
    if handed < len(rows):
        tail = runner.run_layers(runner.embed(rows[handed:]), position + handed, 0, exit_layer)
        hidden = tail if hidden is None else torch.cat((hidden, tail))
    assert hidden is not None  # rows is never empty, so one of the two branches above set it
    targets: list[int] = runner.logits(runner.run_layers(hidden, position, exit_layer)).argmax(-1).tolist()
    accepted = 0
    while accepted < len(draft.tokens) and draft.tokens[accepted] == targets[accepted]:
        accepted += 1
    runner.cache.truncate(position + accepted + 1)
    return Verification(accepted, [*draft.tokens[:accepted], targets[accepted]])
