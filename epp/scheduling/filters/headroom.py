"""Prefers endpoints with headroom: drops those whose queue or KV cache is at the saturation thresholds, unless
every candidate is there (then it keeps them all: whether a saturated pool sheds is the saturation detector's
decision, not a filter's)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from epp.scheduling.interfaces import Candidate, CycleState, SchedulingRequest


@dataclass(frozen=True)
class HeadroomFilter:
    queue_depth: int = 5
    kv_cache_usage: float = 0.8

    def filter(
        self, request: SchedulingRequest, candidates: Sequence[Candidate], state: CycleState
    ) -> Sequence[Candidate]:
        roomy = [
            candidate
            for candidate in candidates
            if candidate.metrics.waiting + candidate.pending < self.queue_depth
            and candidate.metrics.kv_cache_usage < self.kv_cache_usage
        ]
        return roomy or candidates
