"""Rewards short waiting queues (GIE's queue scorer): min-max over the candidates' ``vllm:num_requests_waiting``.

``count_pending``: also count the requests this picker sent after the last scrape (GIE does not).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from epp.scheduling.interfaces import Candidate, CycleState, SchedulingRequest
from epp.scheduling.scorers import lower_is_better


@dataclass(frozen=True)
class QueueDepthScorer:
    count_pending: bool = False

    def score(self, request: SchedulingRequest, candidates: Sequence[Candidate], state: CycleState) -> Sequence[float]:
        if self.count_pending:
            return lower_is_better([c.metrics.waiting + c.pending for c in candidates])
        return lower_is_better([c.metrics.waiting for c in candidates])
