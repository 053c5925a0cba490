"""A pool is saturated when no candidate has room under both thresholds."""

from __future__ import annotations

import pytest

from epp.saturation import saturated
from epp.scheduling.interfaces import Candidate
from tests.epp.fakes import candidate
from tokenlabs.picker_settings import SaturationSettings

LIMITS = SaturationSettings(queue_depth=5, kv_cache_usage=0.8)


def test_no_candidate_is_not_saturation() -> None:
    # No endpoint with fresh metrics is a 503 (unavailable), not a 429.
    assert not saturated([], LIMITS)


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        ([candidate("a", waiting=4, kv_cache_usage=0.79)], False),
        ([candidate("a", waiting=5)], True),  # thresholds are reached at equality
        ([candidate("a", kv_cache_usage=0.8)], True),
        ([candidate("a", waiting=3, pending=2)], True),  # picks not in the metrics yet count
        ([candidate("a", waiting=9), candidate("b", kv_cache_usage=0.95)], True),
        ([candidate("a", waiting=9), candidate("b", waiting=4)], False),  # one endpoint with room is enough
    ],
)
def test_saturated(candidates: list[Candidate], expected: bool) -> None:
    assert saturated(candidates, LIMITS) is expected
