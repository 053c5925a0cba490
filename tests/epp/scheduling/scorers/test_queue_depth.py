"""Queue depth: fewer waiting requests score higher."""

from __future__ import annotations

from epp.scheduling.interfaces import SchedulingRequest
from epp.scheduling.scorers.queue_depth import QueueDepthScorer
from tests.epp.fakes import candidate

REQUEST = SchedulingRequest("m", "hello")


def test_min_max_over_waiting() -> None:
    found = [candidate("a", waiting=0), candidate("b", waiting=5), candidate("c", waiting=10, running=50)]
    assert QueueDepthScorer().score(REQUEST, found, {}) == [1.0, 0.5, 0.0]  # running requests do not count


def test_pending_picks_count_only_when_asked() -> None:
    found = [candidate("a", waiting=0, pending=4), candidate("b", waiting=2)]
    assert QueueDepthScorer().score(REQUEST, found, {}) == [1.0, 0.0]  # GIE's: the metrics alone
    assert QueueDepthScorer(count_pending=True).score(REQUEST, found, {}) == [0.0, 1.0]  # 4 vs 2


def test_equal_queues_score_equal() -> None:
    assert QueueDepthScorer().score(REQUEST, [candidate("a", waiting=3), candidate("b", waiting=3)], {}) == [1.0, 1.0]
