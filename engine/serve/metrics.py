"""The torch worker's metrics: vLLM's names, as the simulator exposes them, plus vLLM's speculative-decoding
counters.

In vLLM's terms a *draft* is a step that proposed at least one token; ``num_draft_tokens`` counts the proposed
tokens and ``num_accepted_tokens`` those the model kept, so acceptance = accepted / draft tokens and the mean
accepted length = accepted / drafts. ``num_accepted_tokens_per_pos{position}`` counts, per draft position (0 is the
first drafted token), how often it was kept. The KV cache is one sequence's contiguous cache: it is reported as
``max_model_len`` blocks of one token, without prefix caching (every request prefills its whole prompt).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter

from engine.sim.metrics import CacheConfigInfo, VllmMetrics


class ServeMetrics(VllmMetrics):
    def __init__(
        self,
        model_name: str,
        max_model_len: int,
        running: Callable[[], float],
        waiting: Callable[[], float],
        kv_cache_usage: Callable[[], float],
    ) -> None:
        cache_info = CacheConfigInfo(block_size=1, num_blocks=max_model_len, enable_prefix_caching=False)
        super().__init__(model_name, cache_info, running, waiting, kv_cache_usage)
        self.spec_decode_drafts = self.counter("vllm:spec_decode_num_drafts", "Decode steps that drafted tokens.")
        self.spec_decode_draft_tokens = self.counter("vllm:spec_decode_num_draft_tokens", "Tokens drafted.")
        self.spec_decode_accepted_tokens = self.counter(
            "vllm:spec_decode_num_accepted_tokens", "Drafted tokens the model accepted."
        )
        self._accepted_per_position = Counter(
            "vllm:spec_decode_num_accepted_tokens_per_pos",
            "Drafted tokens the model accepted, by their position in the draft.",
            ("model_name", "position"),
            registry=self.registry,
        )

    def record_draft(self, drafted: int, accepted: int) -> None:
        """One decode step's draft: ``drafted`` tokens proposed, the first ``accepted`` of them kept."""
        if not drafted:
            return
        self.spec_decode_drafts.inc()
        self.spec_decode_draft_tokens.inc(drafted)
        self.spec_decode_accepted_tokens.inc(accepted)
        for position in range(accepted):
            self._accepted_per_position.labels(self.model_name, str(position)).inc()
