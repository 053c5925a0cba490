"""The lean decode core against transformers' own Llama (fp32): same logits, same greedy tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import LlamaForCausalLM

from engine.spec.greedy import greedy_generate
from engine.spec.runner import Runner
from engine.spec.weights import ModelWeights, load_checkpoint

PROMPTS = [[5, 17, 300, 42], list(range(100, 140)), [7], [1500, 3, 3, 3, 900, 12, 1000]]


# Any: transformers' generate() is typed for a self type its own LlamaForCausalLM does not match.
@pytest.fixture(scope="module")
def hf_model(tiny_dir: Path) -> Any:
    return LlamaForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()


def test_greedy_loop_is_token_identical_to_hf_generate(runner: Runner, hf_model: Any) -> None:
    eos = runner.config.eos_token_ids
    for prompt in PROMPTS:
        with torch.inference_mode():
            reference = hf_model.generate(
                torch.tensor([prompt]), max_new_tokens=48, do_sample=False, eos_token_id=list(eos), pad_token_id=2
            )
        assert greedy_generate(runner, prompt, 48, eos) == reference[0, len(prompt) :].tolist()


def test_prefill_and_one_token_steps_match_hf_logits(runner: Runner, hf_model: Any) -> None:
    sequence = PROMPTS[1]
    with torch.inference_mode():
        expected = hf_model(torch.tensor([sequence])).logits[0]
        prefix = runner.forward(sequence[:30], 0)
        steps = [runner.forward([token], position)[0] for position, token in enumerate(sequence[30:], start=30)]
    torch.testing.assert_close(torch.cat((prefix, torch.stack(steps))), expected, atol=1e-4, rtol=1e-4)


def test_layer_ranges_compose_to_the_whole_model(runner: Runner) -> None:
    sequence = PROMPTS[1]
    with torch.inference_mode():
        whole = runner.run_layers(runner.embed(sequence), 0)
        runner.cache.reset()
        lower = runner.run_layers(runner.embed(sequence), 0, 0, 2)
        assert runner.cache.lengths == (len(sequence), len(sequence), 0, 0)
        upper = runner.run_layers(lower, 0, 2)
    torch.testing.assert_close(upper, whole, atol=1e-5, rtol=1e-5)


def test_a_reduced_head_gives_the_full_logits_of_its_tokens(runner: Runner) -> None:
    ids = torch.tensor([9, 3, 1000, 77])
    head = runner.reduced_head(ids)
    with torch.inference_mode():
        hidden = runner.run_layers(runner.embed(PROMPTS[0]), 0)
        full, reduced = runner.logits(hidden), runner.logits(hidden, head)
    torch.testing.assert_close(reduced, full[:, ids])
    assert head.tokens(reduced.argmax(-1)).tolist() == ids[reduced.argmax(-1)].tolist()
    assert runner.full_head.tokens(torch.tensor([5])).tolist() == [5]


def test_bf16_runs_close_to_fp32(tiny_dir: Path, tiny_weights: ModelWeights) -> None:
    bf16 = Runner(load_checkpoint(tiny_dir, torch.bfloat16), 64)
    assert bf16.cache.keys.dtype == torch.bfloat16
    fp32 = Runner(tiny_weights, 64)
    with torch.inference_mode():
        low, high = bf16.forward(PROMPTS[1], 0), fp32.forward(PROMPTS[1], 0)
    assert low.dtype == torch.bfloat16
    # bf16 keeps 8 bits of mantissa: the logits agree to a few percent of their spread, not to fp32 precision.
    assert (low.float() - high).abs().max() < 0.05 * high.abs().max()
    assert len(greedy_generate(bf16, PROMPTS[0], 8)) == 8


def test_greedy_respects_budget_eos_and_capacity(runner: Runner) -> None:
    assert greedy_generate(runner, PROMPTS[0], 0) == []
    free = greedy_generate(runner, PROMPTS[0], 12)
    assert greedy_generate(runner, PROMPTS[0], 12, eos={free[4]}) == free[: free.index(free[4]) + 1]
    with pytest.raises(ValueError, match="fit"):
        greedy_generate(runner, PROMPTS[0], runner.cache.capacity)
    with pytest.raises(ValueError, match="empty"):
        greedy_generate(runner, [], 4)
