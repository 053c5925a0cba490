import random
from collections import Counter

import pytest

from epp.picker import OutstandingRequests, eligible, pick
from tokenlabs.errors import Unavailable

ENDPOINTS = ["10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"]


def test_least_outstanding_wins_and_the_rest_are_fallbacks() -> None:
    ranked = pick(ENDPOINTS, {"10.0.0.1:8000": 3, "10.0.0.2:8000": 1, "10.0.0.3:8000": 2}, random.Random(0))
    assert ranked == ["10.0.0.2:8000", "10.0.0.3:8000", "10.0.0.1:8000"]


def test_ties_are_spread_evenly() -> None:
    rng = random.Random(1)
    counts = Counter(pick(ENDPOINTS, {}, rng)[0] for _ in range(3000))
    # Uniform choice among three: each near 1000; 850 is > 5 standard deviations below.
    assert min(counts.values()) > 850


def test_subset_hint_restricts_and_empty_pool_is_503() -> None:
    assert eligible(ENDPOINTS, {"10.0.0.3:8000", "10.9.9.9:1"}) == ["10.0.0.3:8000"]
    assert eligible(ENDPOINTS, None) == ENDPOINTS
    with pytest.raises(Unavailable):
        pick([], {}, random.Random(0))


def test_outstanding_counts_never_go_negative() -> None:
    outstanding = OutstandingRequests()
    outstanding.acquire("a")
    outstanding.acquire("a")
    outstanding.release("a")
    assert outstanding.counts == {"a": 1}
    outstanding.release("a")
    outstanding.release("a")
    assert outstanding.counts == {}
