"""The one verify path: acceptance, the bonus token, KV rollback in every layer, the early-exit hand-off."""

from __future__ import annotations

import pytest
import torch

from engine.spec.drafters import Draft
from engine.spec.greedy import greedy_generate, prefill
from engine.spec.runner import Runner
from engine.spec.verify import verify

PROMPT = [11, 400, 23, 1800, 5, 64, 64, 901]


def reference(runner: Runner, count: int = 12) -> list[int]:
    return greedy_generate(runner, PROMPT, count)


def test_a_correct_draft_is_accepted_whole_with_the_greedy_bonus(runner: Runner) -> None:
    greedy = reference(runner)
    with torch.inference_mode():
        pending = prefill(runner, PROMPT)
        result = verify(runner, len(PROMPT), pending, Draft(greedy[1:5]))
    assert (result.accepted, result.tokens) == (4, greedy[1:6])
    assert set(runner.cache.lengths) == {len(PROMPT) + 5}


@pytest.mark.parametrize("wrong_at", [0, 1, 3])
def test_a_draft_is_cut_at_its_first_miss_and_the_cache_rolled_back(runner: Runner, wrong_at: int) -> None:
    greedy = reference(runner)
    draft = greedy[1:5]
    draft[wrong_at] += 1
    with torch.inference_mode():
        result = verify(runner, len(PROMPT), prefill(runner, PROMPT), Draft(draft))
    assert (result.accepted, result.tokens) == (wrong_at, greedy[1 : wrong_at + 2])
    assert set(runner.cache.lengths) == {len(PROMPT) + wrong_at + 1}


def test_after_a_rollback_the_cache_gives_the_logits_of_a_fresh_run(runner: Runner) -> None:
    greedy = reference(runner)
    with torch.inference_mode():
        pending = prefill(runner, PROMPT)
        verify(runner, len(PROMPT), pending, Draft([greedy[1], 7, 8, 9]))
        # Accepted: pending and greedy[1]; the rows of 7, 8, 9 are stale and must not be attended to.
        position = len(PROMPT) + 2
        resumed = runner.forward([greedy[2], greedy[3]], position)
        fresh = Runner(runner.weights, runner.cache.capacity).forward([*PROMPT, *greedy[:4]], 0)[-2:]
    torch.testing.assert_close(resumed, fresh, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("handed", [0, 1, 3, 5])
def test_hidden_states_handed_over_at_the_exit_layer_verify_like_a_full_pass(runner: Runner, handed: int) -> None:
    greedy = reference(runner)
    draft = [*greedy[1:3], 5, greedy[4]]  # two accepted, then a miss
    exit_layer = 2
    with torch.inference_mode():
        pending = prefill(runner, PROMPT)
        rows = [pending, *draft]
        hidden = None
        if handed:
            hidden = runner.run_layers(runner.embed(rows[:handed]), len(PROMPT), 0, exit_layer)
        assert runner.cache.lengths[exit_layer:] == (len(PROMPT),) * (runner.num_layers - exit_layer)
        result = verify(runner, len(PROMPT), pending, Draft(draft, exit_layer, hidden))
    assert (result.accepted, result.tokens) == (2, greedy[1:4])
    assert set(runner.cache.lengths) == {len(PROMPT) + 3}


def test_an_empty_draft_is_a_plain_greedy_step(runner: Runner) -> None:
    greedy = reference(runner)
    with torch.inference_mode():
        result = verify(runner, len(PROMPT), prefill(runner, PROMPT), Draft())
    assert (result.accepted, result.tokens) == (0, greedy[1:2])


def test_inconsistent_drafts_are_refused(runner: Runner) -> None:
    with torch.inference_mode():
        pending = prefill(runner, PROMPT)
        with pytest.raises(ValueError, match="exit layer"):
            verify(runner, len(PROMPT), pending, Draft([1], runner.num_layers + 1))
        too_many = torch.zeros(3, runner.config.hidden_size)
        with pytest.raises(ValueError, match="hidden rows"):
            verify(runner, len(PROMPT), pending, Draft([1], 2, too_many))
        with pytest.raises(ValueError, match="without an exit layer"):
            verify(runner, len(PROMPT), pending, Draft([1], 0, too_many[:1]))
