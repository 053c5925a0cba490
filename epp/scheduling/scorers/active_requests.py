"""Rewards the fewest requests in the engine: running + waiting + sent since the last scrape (least request)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from epp.scheduling.interfaces import Candidate, CycleState, SchedulingRequest
from epp.scheduling.scorers import lower_is_better


@dataclass(frozen=True)
class ActiveRequestsScorer:
    def score(self, request: SchedulingRequest, candidates: Sequence[Candidate], state: CycleState) -> Sequence[float]:
        return lower_is_better([c.metrics.running + c.metrics.waiting + c.pending for c in candidates])
