"""Headroom: drop endpoints at the thresholds, unless that would drop them all."""

from __future__ import annotations

from epp.scheduling.filters.headroom import HeadroomFilter
from epp.scheduling.interfaces import SchedulingRequest
from tests.epp.fakes import candidate

REQUEST = SchedulingRequest("m")


def test_drops_endpoints_without_room_keeping_order_and_objects() -> None:
    found = [
        candidate("roomy:1", waiting=4, kv_cache_usage=0.79),
        candidate("queued:1", waiting=5),  # at the queue threshold
        candidate("full:1", kv_cache_usage=0.8),  # at the KV threshold
        candidate("pending:1", waiting=3, pending=2),  # picks since the scrape count
        candidate("free:1"),
    ]
    kept = HeadroomFilter(queue_depth=5, kv_cache_usage=0.8).filter(REQUEST, found, {})
    assert list(kept) == [found[0], found[4]]
    assert all(a is b for a, b in zip(kept, [found[0], found[4]], strict=True))


def test_never_empties_the_list() -> None:
    found = [candidate("a:1", waiting=10), candidate("b:1", kv_cache_usage=1.0)]
    assert list(HeadroomFilter().filter(REQUEST, found, {})) == found


def test_thresholds_are_parameters() -> None:
    found = [candidate("a:1", waiting=1), candidate("b:1", waiting=0)]
    assert [c.address for c in HeadroomFilter(queue_depth=1).filter(REQUEST, found, {})] == ["b:1"]
