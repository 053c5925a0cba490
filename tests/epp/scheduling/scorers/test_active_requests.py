"""Active requests (least request): running + waiting + picks not yet in the metrics."""

from __future__ import annotations

from epp.scheduling.interfaces import SchedulingRequest
from epp.scheduling.scorers.active_requests import ActiveRequestsScorer
from tests.epp.fakes import candidate


def test_counts_running_waiting_and_pending() -> None:
    found = [
        candidate("a", running=2, waiting=2),  # 4
        candidate("b", running=1, pending=1),  # 2
        candidate("c", running=3, waiting=1, pending=2),  # 6
    ]
    assert ActiveRequestsScorer().score(SchedulingRequest("m"), found, {}) == [0.5, 1.0, 0.0]
