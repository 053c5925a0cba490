"""The benchmark's losslessness rule: where a mode's output differs from the greedy loop's, was it a near-tie?

Greedy acceptance makes speculative output the greedy output in exact arithmetic. In floating point the verify
pass runs ``m`` rows at once (a matrix product) where the greedy loop runs one (a matrix-vector product); the two
sum in different orders and so round differently, in every projection of every layer. In bf16 that moves a logit
by a few units in the last place (ulps), enough to flip the argmax where the top two logits are that close.

The rule, per divergent output: take the first position where the mode's token differs from greedy's, replay the
greedy loop's own computation up to it (prefill, then one-token steps, exactly as the reference ran) and read its
logits ``z`` there. With ``r`` the reference's token (its argmax) and ``t`` the mode's token:

* ``top2_gap = z[r] - (second largest logit)`` (what the issue asks to report),
* ``chosen_gap = z[r] - z[t] >= top2_gap`` (the gap the flip actually crossed),
* ``bound = tie_ulps * ulp(z[r])``, where ``ulp(x) = eps * 2**floor(log2|x|)`` is the spacing of the model dtype's
  numbers at the top logit's magnitude (bf16: ``eps = 2**-7``; a top logit of 20 has ulp 0.125).

The divergence is a *near-tie* when ``chosen_gap <= bound``; a mode's output is ``lossless`` when every divergence
is a near-tie. The default bound is 4 ulps: the logits are themselves rounded to the dtype (1 ulp), and the two
computation orders differ by rounding in each of the layers, which moves logits by a few ulps, not by tens. In fp32
the same rule (with fp32's eps) only admits exact-arithmetic ties, so there ``lossless`` means ``identical`` in
practice. Using ``chosen_gap`` rather than ``top2_gap`` is stricter: a flip to a token that is not the runner-up
is never a near-tie.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from engine.spec.greedy import prefill
from engine.spec.runner import Runner

DEFAULT_TIE_ULPS = 4.0


@dataclass(frozen=True)
class Divergence:
    """The first difference between a mode's output and the greedy reference, judged by the rule above.
    ``token`` is None when one output is a strict prefix of the other (no differing token; never a near-tie)."""

    index: int
    reference_token: int
    token: int | None
    top2_gap: float
    chosen_gap: float
    bound: float
    near_tie: bool

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON values; an infinite gap (no differing token) becomes null."""
        return {key: None if value == math.inf else value for key, value in asdict(self).items()}


def first_difference(reference: Sequence[int], output: Sequence[int]) -> int | None:
    """The first index where the two token lists differ (including where one ends before the other), or None."""
    for index, (a, b) in enumerate(zip(reference, output, strict=False)):
        if a != b:
            return index
    return None if len(reference) == len(output) else min(len(reference), len(output))


def ulp(value: float, dtype: torch.dtype) -> float:
    """The spacing of ``dtype``'s numbers at ``|value|`` (normal range; a zero gives the spacing at 1)."""
    magnitude = abs(value)
    exponent = math.floor(math.log2(magnitude)) if magnitude > 0 else 0
    return float(torch.finfo(dtype).eps) * 2.0**exponent


def judge(
    logits: torch.Tensor, index: int, reference_token: int, token: int | None, dtype: torch.dtype, tie_ulps: float
) -> Divergence:
    """Applies the rule to the reference's logits ``[vocab]`` at the first differing position ``index``."""
    z = logits.float()
    top2 = torch.topk(z, 2).values
    top = float(z[reference_token])
    top2_gap = top - float(top2[1])
    chosen_gap = math.inf if token is None else top - float(z[token])
    bound = tie_ulps * ulp(top, dtype)
    return Divergence(index, reference_token, token, top2_gap, chosen_gap, bound, chosen_gap <= bound)


def reference_logits_at(
    runner: Runner, prompt_ids: Sequence[int], reference: Sequence[int], index: int
) -> torch.Tensor:
    """The greedy loop's logits ``[vocab]`` for output position ``index``, recomputed the way the loop computed
    them: the prefill's last row for index 0, else one-token steps over ``reference[:index]``. Overwrites the
    runner's cache."""
    if not 0 <= index < len(reference):
        raise ValueError(f"index {index} is outside the reference's {len(reference)} tokens")
    with torch.inference_mode():
        if index == 0:
            runner.cache.reset()
            hidden = runner.run_layers(runner.embed(prompt_ids), 0)
            return runner.logits(hidden[-1:])[0]
        prefill(runner, prompt_ids)
        position = len(prompt_ids)
        logits = runner.forward([reference[0]], position)[0]
        for step in range(1, index):
            position += 1
            logits = runner.forward([reference[step]], position)[0]
        return logits


def find_divergence(
    runner: Runner, prompt_ids: Sequence[int], reference: Sequence[int], output: Sequence[int], tie_ulps: float
) -> Divergence | None:
    """None when ``output`` equals ``reference``; otherwise the judged first difference."""
    index = first_difference(reference, output)
    if index is None:
        return None
    if index >= len(reference):  # the mode went on past the reference's end: not a flip of the reference's argmax
        return Divergence(index, -1, output[index], math.inf, math.inf, 0.0, False)
    token = output[index] if index < len(output) else None
    logits = reference_logits_at(runner, prompt_ids, reference, index)
    return judge(logits, index, reference[index], token, runner.weights.dtype, tie_ulps)
