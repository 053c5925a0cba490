"""One verify path for every drafter: the pending token and the draft through the model in one pass, acceptance
by the request's rule (greedy, or speculative sampling above temperature 0), the bonus token, and the cache rolled
back to what was accepted.

With ``m`` rows in one pass the weights are read once for all of them, which is why checking ``k`` drafted tokens
costs little more than one plain step; an early-exit draft also skips the layers below its exit, whose keys and
values the drafter already wrote.
"""

from __future__ import annotations

import torch

from engine.spec.drafters import Draft
from engine.spec.runner import Runner
from engine.spec.sampling import GREEDY, Acceptance, AcceptanceRule


def verify(runner: Runner, position: int, pending: int, draft: Draft, rule: AcceptanceRule = GREEDY) -> Acceptance:
    """Verifies ``draft`` after ``pending`` (the token at ``position``, not yet in the cache), as described in
    :mod:`engine.spec.drafters`. With the greedy rule draft token ``i`` is accepted when it is the argmax of the
    logits at the row before it, for the longest such prefix, so in exact arithmetic the result is what greedy
    decoding would produce; with a sampling rule the emitted tokens are distributed as plain sampling's.
    Afterwards every layer of the cache holds exactly ``[0, position + accepted + 1)``.

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
    outcome = rule.accept(draft.tokens, runner.logits(runner.run_layers(hidden, position, exit_layer)))
    runner.cache.truncate(position + outcome.accepted + 1)
    return outcome
