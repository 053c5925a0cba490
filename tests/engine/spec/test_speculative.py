"""Golden tests: in fp32 the speculative loop is token-identical to the greedy loop, whatever the drafter does."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from engine.spec.drafters import Draft, Drafter, DraftState, TokenDrafter
from engine.spec.drafters.lookup import propose
from engine.spec.greedy import greedy_generate
from engine.spec.runner import Runner
from engine.spec.speculative import speculative_generate
from tests.engine.spec.support import EarlyExitProbe, OracleDrafter

PROMPTS = [
    [11, 400, 23, 1800, 5, 64, 64, 901],
    list(range(200, 260)),
    # Repeats itself, so prompt lookup finds matches.
    [30, 31, 32, 33, 34, 35, 30, 31, 32, 33, 34, 35, 30, 31, 32],
]
NEW = 64


def drafters(reference: list[int], prompt_len: int) -> dict[str, Drafter]:
    return {
        "oracle": OracleDrafter(reference, prompt_len),
        "always wrong": OracleDrafter(reference, prompt_len, always_wrong=True),
        "partly wrong": OracleDrafter(reference, prompt_len, corrupt=True),
        "lookup": TokenDrafter(propose),
        "early exit at 1": EarlyExitProbe(OracleDrafter(reference, prompt_len, corrupt=True), exit_layer=1),
        "early exit at 3": EarlyExitProbe(OracleDrafter(reference, prompt_len, corrupt=True), exit_layer=3),
    }


@pytest.mark.parametrize("max_draft", [1, 2, 4])
@pytest.mark.parametrize("prompt", PROMPTS, ids=["short", "long", "repetitive"])
def test_every_drafter_gives_exactly_the_greedy_tokens(runner: Runner, prompt: list[int], max_draft: int) -> None:
    greedy = greedy_generate(runner, prompt, NEW)
    for name, drafter in drafters(greedy, len(prompt)).items():
        result = speculative_generate(runner, drafter, prompt, NEW, max_draft=max_draft)
        assert result.tokens == greedy, name


def test_stats_count_drafts_and_acceptances(runner: Runner) -> None:
    prompt = PROMPTS[0]
    greedy = greedy_generate(runner, prompt, NEW)
    oracle = speculative_generate(runner, OracleDrafter(greedy, len(prompt)), prompt, NEW, max_draft=4).stats
    # Each step yields its draft plus the bonus token: 63 tokens after the prefill's first in ceil(63 / 5) steps.
    assert (oracle.steps, oracle.acceptance_rate) == (13, 1.0)
    assert oracle.draft_tokens == oracle.accepted_tokens == NEW - 1 - oracle.steps
    wrong = OracleDrafter(greedy, len(prompt), always_wrong=True)
    stats = speculative_generate(runner, wrong, prompt, NEW, max_draft=4).stats
    assert (stats.steps, stats.drafts, stats.accepted_tokens, stats.acceptance_rate) == (NEW - 1, NEW - 2, 0, 0.0)


def test_eos_inside_an_accepted_draft_ends_the_output_there(runner: Runner) -> None:
    prompt = PROMPTS[1]
    greedy = greedy_generate(runner, prompt, NEW)
    eos = {greedy[10]}
    expected = greedy_generate(runner, prompt, NEW, eos)
    result = speculative_generate(runner, OracleDrafter(greedy, len(prompt)), prompt, NEW, eos, max_draft=4)
    assert result.tokens == expected == greedy[: greedy.index(greedy[10]) + 1]


@pytest.mark.parametrize("new", [0, 1, 2, 5])
def test_short_budgets_are_met_exactly(runner: Runner, new: int) -> None:
    prompt = PROMPTS[0]
    greedy = greedy_generate(runner, prompt, new)
    assert speculative_generate(runner, OracleDrafter(greedy, len(prompt)), prompt, new).tokens == greedy


class OverBudget:
    def propose(self, context_ids: Sequence[int], state: DraftState) -> Draft:
        return Draft([1] * (state.max_tokens + 1))


def test_a_drafter_over_its_budget_is_refused(runner: Runner) -> None:
    with pytest.raises(ValueError, match="at most"):
        speculative_generate(runner, OverBudget(), PROMPTS[0], 8)
