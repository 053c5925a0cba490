"""The Llama decoder layer as plain functions over ``[m, hidden]`` activations of one sequence.

Numerics follow transformers' ``LlamaForCausalLM`` (RMSNorm in fp32, RoPE tables computed in fp32 and cast), so
that in fp32 the lean loop picks the same greedy tokens as ``generate()``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.spec.kv_cache import KVCache
from engine.spec.weights import LayerWeights, ModelConfig


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm computed in fp32 whatever ``x``'s dtype, then scaled by ``weight`` in ``x``'s dtype (as HF does)."""
    x32 = x.to(torch.float32)
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


class Rope:
    """Rotary position embedding tables for positions ``[0, capacity)``, precomputed once in fp32."""

    def __init__(self, head_dim: int, theta: float, capacity: int, dtype: torch.dtype, device: torch.device) -> None:
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).to(torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(capacity, dtype=torch.float32), inv_freq)
        angles = torch.cat((freqs, freqs), dim=-1)
        self.cos = angles.cos().to(dtype=dtype, device=device)
        self.sin = angles.sin().to(dtype=dtype, device=device)

    def apply(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Rotates ``x`` (``[heads, m, head_dim]``) as if its rows sat at positions ``[start, start + m)``."""
        m = x.shape[-2]
        cos, sin = self.cos[start : start + m], self.sin[start : start + m]
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin


def decoder_layer(
    weights: LayerWeights,
    config: ModelConfig,
    x: torch.Tensor,
    start: int,
    cache: KVCache,
    layer: int,
    rope: Rope,
) -> torch.Tensor:
    """One decoder layer on ``x`` (``[m, hidden]``) at positions ``[start, start + m)``: attends to the cache's
    positions ``[0, start)`` of this layer plus the ``m`` new ones (causally), writes their keys and values into the
    cache, and returns the new residual stream ``[m, hidden]``."""
    m = x.shape[0]
    heads, kv_heads, head_dim = config.num_heads, config.num_kv_heads, config.head_dim
    qkv = F.linear(rms_norm(x, weights.input_norm, config.rms_norm_eps), weights.qkv)
    q, k, v = torch.split(qkv, [heads * head_dim, kv_heads * head_dim, kv_heads * head_dim], dim=-1)
    q = rope.apply(q.view(m, heads, head_dim).transpose(0, 1), start)
    k = rope.apply(k.view(m, kv_heads, head_dim).transpose(0, 1), start)
    cache.write(layer, start, k, v.view(m, kv_heads, head_dim).transpose(0, 1))
    keys, values = cache.view(layer)
    # Grouped-query attention as plain attention: the `group` query heads sharing a KV head become `group * m` query
    # rows of that KV head. SDPA's own enable_gqa took the slow math kernel here (4x slower at 250 positions).
    group = heads // kv_heads
    queries = q.reshape(1, kv_heads, group * m, head_dim)
    # One query row sees every cached position; m rows need the causal mask aligned to the end of the keys, which
    # is not what SDPA's is_causal (aligned to the start) does.
    mask = None
    if m > 1:
        key_positions = torch.arange(keys.shape[1], device=x.device)
        query_positions = torch.arange(start, start + m, device=x.device).repeat(group)
        mask = key_positions[None, :] <= query_positions[:, None]
    attended = F.scaled_dot_product_attention(queries, keys[None], values[None], attn_mask=mask)
    x = x + F.linear(attended.view(heads, m, head_dim).transpose(0, 1).reshape(m, heads * head_dim), weights.o_proj)
    gate, up = F.linear(rms_norm(x, weights.post_norm, config.rms_norm_eps), weights.gate_up).chunk(2, dim=-1)
    return x + F.linear(F.silu(gate) * up, weights.down)
