"""The acceptance floor: drafting pauses on a sequence whose drafts keep failing, probes now and then, and never
changes the output."""

from __future__ import annotations

import pytest

from engine.spec.drafters.adaptive import AdaptiveDrafter
from engine.spec.greedy import greedy_generate
from engine.spec.runner import Runner
from engine.spec.speculative import speculative_generate
from tests.engine.spec.support import OracleDrafter

PROMPT = [11, 400, 23, 1800, 5, 64, 64, 901]
NEW = 64


def test_a_drafter_that_is_always_wrong_is_paused_but_probed(runner: Runner) -> None:
    greedy = greedy_generate(runner, PROMPT, NEW)
    adaptive = AdaptiveDrafter(OracleDrafter(greedy, len(PROMPT), always_wrong=True), probe_every=8)
    result = speculative_generate(runner, adaptive, PROMPT, NEW, max_draft=2)
    assert result.tokens == greedy
    # The average starts at 1 and falls by a factor 0.8 per failed draft: below 0.2 after 8 drafts.
    assert 8 <= result.stats.drafts <= 8 + result.stats.steps // 8 + 1
    assert adaptive.paused_steps >= result.stats.steps - result.stats.drafts - 1
    assert result.stats.accepted_tokens == 0


def test_a_drafter_that_is_always_right_is_never_paused(runner: Runner) -> None:
    greedy = greedy_generate(runner, PROMPT, NEW)
    adaptive = AdaptiveDrafter(OracleDrafter(greedy, len(PROMPT)))
    result = speculative_generate(runner, adaptive, PROMPT, NEW, max_draft=2)
    assert result.tokens == greedy
    assert adaptive.paused_steps == 0 and adaptive.acceptance == 1.0
    assert result.stats.accepted_tokens == result.stats.draft_tokens > 0


def test_a_floor_of_zero_never_pauses(runner: Runner) -> None:
    greedy = greedy_generate(runner, PROMPT, NEW)
    adaptive = AdaptiveDrafter(OracleDrafter(greedy, len(PROMPT), always_wrong=True), floor=0.0)
    result = speculative_generate(runner, adaptive, PROMPT, NEW, max_draft=2)
    assert adaptive.paused_steps == 0 and result.stats.drafts >= result.stats.steps - 1


def test_partial_acceptance_is_read_from_the_context(runner: Runner) -> None:
    greedy = greedy_generate(runner, PROMPT, NEW)
    adaptive = AdaptiveDrafter(OracleDrafter(greedy, len(PROMPT), corrupt=True), decay=0.5)
    speculative_generate(runner, adaptive, PROMPT, NEW, max_draft=2)
    assert 0.0 < adaptive.acceptance < 1.0


@pytest.mark.parametrize(
    ("keyword", "value"), [("floor", -0.1), ("floor", 1.5), ("decay", 1.0), ("decay", -0.5), ("probe_every", 0)]
)
def test_parameters_out_of_range_are_refused(keyword: str, value: float) -> None:
    with pytest.raises(ValueError, match=keyword):
        AdaptiveDrafter(OracleDrafter([], 0), **{keyword: value})  # type: ignore[arg-type]
