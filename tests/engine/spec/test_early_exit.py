"""Early-exit and hybrid drafters on the tiny model, fp32: token-identical to greedy, and the gate's plain steps."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from engine.spec.drafters.early_exit import EarlyExitDrafter
from engine.spec.drafters.hybrid import HybridDrafter
from engine.spec.gate import Gate
from engine.spec.greedy import greedy_generate
from engine.spec.heads import FORMAT_VERSION, ExitHead, HeadMetadata, identity_head, save_head
from engine.spec.runner import Runner
from engine.spec.speculative import speculative_generate
from tests.engine.spec.test_speculative import NEW, PROMPTS

UNGATED = Gate("entropy", math.inf)
# The random tiny model's lens drafts are nearly uniform over 512 tokens (entropy near log 512 = 6.24 nats); at 5.6
# some steps draft two tokens, some stop after one and some draft none (checked below), so every path is exercised.
MIXED = Gate("entropy", 5.6)


def lens(runner: Runner, exit_layer: int, vocab_size: int = 512) -> ExitHead:
    return identity_head(runner.config.hidden_size, torch.arange(vocab_size), exit_layer)


@pytest.mark.parametrize("exit_layer", [1, 2, 3])
@pytest.mark.parametrize("prompt", PROMPTS, ids=["short", "long", "repetitive"])
def test_early_exit_and_hybrid_give_exactly_the_greedy_tokens(
    runner: Runner, prompt: list[int], exit_layer: int
) -> None:
    greedy = greedy_generate(runner, prompt, NEW)
    gated = MIXED
    for max_tokens in (1, 2, 3):
        for gate in (UNGATED, gated):
            early = EarlyExitDrafter(lens(runner, exit_layer), gate, max_tokens)
            assert speculative_generate(runner, early, prompt, NEW).tokens == greedy
            hybrid = HybridDrafter(EarlyExitDrafter(lens(runner, exit_layer), gate, max_tokens))
            assert speculative_generate(runner, hybrid, prompt, NEW).tokens == greedy


def test_ungated_early_exit_drafts_every_step_up_to_its_cap(runner: Runner) -> None:
    prompt = PROMPTS[0]
    stats = speculative_generate(runner, EarlyExitDrafter(lens(runner, 2), UNGATED, 2), prompt, NEW).stats
    # The last step has no budget left to draft into.
    assert stats.drafts == stats.steps - 1
    assert stats.draft_tokens <= 2 * stats.steps


def test_a_gate_between_the_extremes_drafts_some_steps_and_stops_some_drafts_early(runner: Runner) -> None:
    stats = speculative_generate(runner, EarlyExitDrafter(lens(runner, 2), MIXED, 2), PROMPTS[1], NEW).stats
    assert 0 < stats.drafts < stats.steps - 1
    assert stats.drafts < stats.draft_tokens < 2 * stats.drafts


def test_an_always_unsure_gate_makes_every_step_plain(runner: Runner) -> None:
    prompt = PROMPTS[1]
    greedy = greedy_generate(runner, prompt, NEW)
    unsure = Gate("one_minus_pmax", 0.0)  # a reduced vocabulary never puts all mass on one token
    result = speculative_generate(runner, EarlyExitDrafter(lens(runner, 2), unsure), prompt, NEW)
    assert result.tokens == greedy
    assert (result.stats.steps, result.stats.drafts, result.stats.draft_tokens) == (NEW - 1, 0, 0)


def test_hybrid_uses_lookup_where_it_matches_and_early_exit_elsewhere(runner: Runner) -> None:
    prompt = PROMPTS[2]
    hybrid = HybridDrafter(EarlyExitDrafter(lens(runner, 2), UNGATED))
    assert speculative_generate(runner, hybrid, prompt, NEW).tokens == greedy_generate(runner, prompt, NEW)
    assert hybrid.lookup_steps > 0
    assert hybrid.fallback_steps > 0


def test_an_exit_layer_outside_the_model_is_refused(runner: Runner) -> None:
    with pytest.raises(ValueError, match="exit layer"):
        speculative_generate(runner, EarlyExitDrafter(lens(runner, runner.num_layers)), PROMPTS[0], 8)


def test_bench_modes_build_from_an_artifact(runner: Runner, tmp_path: Path) -> None:
    from engine.spec.bench_modes import ModeSetup, ModeUnavailableError
    from engine.spec.modes import build_mode

    head = lens(runner, 2)
    metadata = HeadMetadata(FORMAT_VERSION, "x", 2, "identity", 512, runner.config.hidden_size, 0, 0, 0, None)
    save_head(tmp_path, head, metadata)
    prompt = PROMPTS[2]
    greedy = greedy_generate(runner, prompt, NEW)
    for mode in ("early_exit", "hybrid"):
        generation = build_mode(mode, ModeSetup(runner, 4, tmp_path))(prompt, NEW, ())
        assert generation.tokens == greedy and generation.stats is not None
        floored = build_mode(mode, ModeSetup(runner, 4, tmp_path, acceptance_floor=0.2))(prompt, NEW, ())
        assert floored.tokens == greedy
        with pytest.raises(ModeUnavailableError):
            build_mode(mode, ModeSetup(runner, 4, None))
