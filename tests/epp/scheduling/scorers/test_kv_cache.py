"""KV cache: free cache scores higher, 1 - usage."""

from __future__ import annotations

from epp.scheduling.interfaces import SchedulingRequest
from epp.scheduling.scorers.kv_cache import KvCacheScorer
from tests.epp.fakes import candidate


def test_free_fraction() -> None:
    found = [
        candidate("a", kv_cache_usage=0.0),
        candidate("b", kv_cache_usage=0.25),
        candidate("c", kv_cache_usage=1.0),
    ]
    assert KvCacheScorer().score(SchedulingRequest("m"), found, {}) == [1.0, 0.75, 0.0]
