"""Rewards free KV cache (GIE's kv-cache utilisation scorer): 1 - ``vllm:kv_cache_usage_perc``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from epp.scheduling.interfaces import Candidate, CycleState, SchedulingRequest


@dataclass(frozen=True)
class KvCacheScorer:
    def score(self, request: SchedulingRequest, candidates: Sequence[Candidate], state: CycleState) -> Sequence[float]:
        return [1.0 - candidate.metrics.kv_cache_usage for candidate in candidates]
