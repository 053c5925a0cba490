"""The model runner: embeddings, any range of decoder layers, final norm and LM heads over one KV cache.

Layer ranges are what self-speculation needs: a drafter runs layers ``[0, K)`` on its tokens and stops, and the
verifier continues from the drafter's hidden states at layer K through ``[K, L)``, reusing the drafter's KV cache
below K instead of recomputing it. Everything works on one sequence (no batch dimension): ``[m, hidden]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.spec.kv_cache import KVCache
from engine.spec.layers import Rope, decoder_layer, rms_norm
from engine.spec.weights import ModelConfig, ModelWeights


def set_threads(threads: int) -> None:
    """Sets torch's intra-op threads for this process (benchmarks here use 2, the machine's cores)."""
    torch.set_num_threads(threads)


@dataclass(frozen=True)
class VocabHead:
    """An LM head over the whole vocabulary or a subset of it.

    ``weight`` is ``[n, hidden]``. For the full head ``token_ids`` is None and logit ``i`` is token ``i``; for a
    reduced head ``token_ids[i]`` (int64) is the token of logit ``i``. A reduced head costs ``n / vocab`` of the full
    one, which is why drafters use one.
    """

    weight: torch.Tensor
    token_ids: torch.Tensor | None = None

    def logits(self, normed: torch.Tensor) -> torch.Tensor:
        """Logits ``[m, n]`` of final-normed hidden states ``[m, hidden]``."""
        return F.linear(normed, self.weight)

    def tokens(self, indices: torch.Tensor) -> torch.Tensor:
        """Maps logit indices (e.g. an argmax) to vocabulary token ids."""
        return indices if self.token_ids is None else self.token_ids[indices]


class Runner:
    """A model and its KV cache for one sequence of at most ``capacity`` positions.

    Callers keep positions consistent: running layers on ``m`` rows at ``start`` requires every layer in the range
    to hold exactly ``[0, start)`` or more (longer is rolled back by the write); see :class:`KVCache`.
    """

    def __init__(self, weights: ModelWeights, capacity: int, device: torch.device | str = "cpu") -> None:
        config = weights.config
        if capacity > config.max_position_embeddings:
            raise ValueError(f"capacity {capacity} exceeds the model's {config.max_position_embeddings} positions")
        self.weights = weights
        self.config: ModelConfig = config
        self.device = torch.device(device)
        self.cache = KVCache(
            config.num_layers, config.num_kv_heads, config.head_dim, capacity, weights.dtype, self.device
        )
        self.rope = Rope(config.head_dim, config.rope_theta, capacity, weights.dtype, self.device)
        self.full_head = VocabHead(weights.lm_head)

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    def reduced_head(self, token_ids: torch.Tensor) -> VocabHead:
        """A head over ``token_ids`` only (its rows gathered once, contiguous)."""
        ids = token_ids.to(device=self.device, dtype=torch.int64)
        return VocabHead(self.weights.lm_head[ids].contiguous(), ids)

    def embed(self, token_ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Input embeddings ``[m, hidden]`` of ``m`` token ids."""
        ids = torch.as_tensor(token_ids, dtype=torch.int64, device=self.device)
        return F.embedding(ids, self.weights.embed)

    def run_layers(self, hidden: torch.Tensor, start: int, first: int = 0, last: int | None = None) -> torch.Tensor:
        """Runs layers ``[first, last)`` (``last`` defaults to all) on ``hidden`` (``[m, hidden]``, the residual
        stream entering layer ``first``) at positions ``[start, start + m)``; writes those layers' cache entries and
        returns the residual stream leaving layer ``last - 1``."""
        end = self.num_layers if last is None else last
        for layer in range(first, end):
            hidden = decoder_layer(self.weights.layers[layer], self.config, hidden, start, self.cache, layer, self.rope)
        return hidden

    def logits(self, hidden: torch.Tensor, head: VocabHead | None = None) -> torch.Tensor:
        """Final norm, then ``head`` (the full head by default): ``[m, hidden]`` to ``[m, n]``."""
        normed = rms_norm(hidden, self.weights.final_norm, self.config.rms_norm_eps)
        return (head or self.full_head).logits(normed)

    def forward(self, token_ids: Sequence[int] | torch.Tensor, start: int) -> torch.Tensor:
        """All layers on ``token_ids`` at positions ``[start, start + m)``: full logits ``[m, vocab]``."""
        return self.logits(self.run_layers(self.embed(token_ids), start))
