"""A Llama-family checkpoint as the decode core wants it: shapes in a config, projections fused, one dtype.

Fusing q/k/v into one matrix and gate/up into another turns seven matrix products per layer into four. At batch
size one on a CPU each product costs mostly dispatch overhead, not arithmetic, so fewer, larger products win.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file


@dataclass(frozen=True)
class ModelConfig:
    """The shapes and constants of a Llama-family decoder (Llama, SmolLM2, ...), read from an HF ``config.json``."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float
    rms_norm_eps: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    eos_token_ids: tuple[int, ...]

    @classmethod
    def from_hf(cls, config: Mapping[str, Any]) -> ModelConfig:
        """Reads an HF Llama config (as a dict). Raises ``ValueError`` for what this core does not implement:
        RoPE scaling, attention or MLP biases, an activation other than SiLU."""
        if config.get("model_type", "llama") != "llama":
            raise ValueError(f"not a Llama-family model: {config.get('model_type')!r}")
        rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
        if rope.get("rope_type", rope.get("type", "default")) != "default":
            raise ValueError(f"RoPE scaling {rope!r} is not implemented")
        if config.get("attention_bias") or config.get("mlp_bias"):
            raise ValueError("attention and MLP biases are not implemented")
        if config.get("hidden_act", "silu") != "silu":
            raise ValueError(f"activation {config.get('hidden_act')!r} is not implemented")
        hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
        eos = config.get("eos_token_id")
        eos_ids = () if eos is None else tuple(int(e) for e in eos) if isinstance(eos, list) else (int(eos),)
        return cls(
            vocab_size=int(config["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(config["intermediate_size"]),
            num_layers=int(config["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            # transformers 5 moved rope_theta into rope_parameters; older configs keep it at the top level.
            rope_theta=float(rope.get("rope_theta", config.get("rope_theta", 10000.0))),
            rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
            max_position_embeddings=int(config.get("max_position_embeddings", 2048)),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            eos_token_ids=eos_ids,
        )


@dataclass(frozen=True)
class LayerWeights:
    """One decoder layer. ``qkv`` is ``[(heads + 2 * kv_heads) * head_dim, hidden]`` (q rows, then k, then v);
    ``gate_up`` is ``[2 * intermediate, hidden]`` (gate rows, then up); all in the nn.Linear ``[out, in]`` layout."""

    input_norm: torch.Tensor
    qkv: torch.Tensor
    o_proj: torch.Tensor
    post_norm: torch.Tensor
    gate_up: torch.Tensor
    down: torch.Tensor


@dataclass(frozen=True)
class ModelWeights:
    """A whole model in one dtype. ``lm_head`` is the same tensor as ``embed`` when the checkpoint ties them."""

    config: ModelConfig
    embed: torch.Tensor
    layers: tuple[LayerWeights, ...]
    final_norm: torch.Tensor
    lm_head: torch.Tensor

    @property
    def dtype(self) -> torch.dtype:
        return self.embed.dtype

    @classmethod
    def from_state_dict(
        cls, config: ModelConfig, state: Mapping[str, torch.Tensor], dtype: torch.dtype = torch.float32
    ) -> ModelWeights:
        """Fuses an HF ``LlamaForCausalLM`` state dict (``model.layers.N.self_attn.q_proj.weight``, ...) into
        contiguous ``dtype`` tensors. Raises ``KeyError`` for a missing tensor."""

        def get(name: str) -> torch.Tensor:
            return state[name].to(dtype).contiguous()

        def fused(*names: str) -> torch.Tensor:
            return torch.cat([state[name].to(dtype) for name in names]).contiguous()

        layers = []
        for index in range(config.num_layers):
            prefix = f"model.layers.{index}."
            attn, mlp = prefix + "self_attn.", prefix + "mlp."
            layers.append(
                LayerWeights(
                    input_norm=get(prefix + "input_layernorm.weight"),
                    qkv=fused(attn + "q_proj.weight", attn + "k_proj.weight", attn + "v_proj.weight"),
                    o_proj=get(attn + "o_proj.weight"),
                    post_norm=get(prefix + "post_attention_layernorm.weight"),
                    gate_up=fused(mlp + "gate_proj.weight", mlp + "up_proj.weight"),
                    down=get(mlp + "down_proj.weight"),
                )
            )
        embed = get("model.embed_tokens.weight")
        tied = config.tie_word_embeddings or "lm_head.weight" not in state
        return cls(
            config=config,
            embed=embed,
            layers=tuple(layers),
            final_norm=get("model.norm.weight"),
            lm_head=embed if tied else get("lm_head.weight"),
        )


def load_checkpoint(directory: Path, dtype: torch.dtype = torch.float32) -> ModelWeights:
    """Loads an HF Llama checkpoint directory (``config.json`` plus one or more ``*.safetensors`` files) without
    building the HF model: the tensors go straight into the fused layout."""
    config = ModelConfig.from_hf(json.loads((directory / "config.json").read_text(encoding="utf-8")))
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {directory}")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(file))
    return ModelWeights.from_state_dict(config, state, dtype)
