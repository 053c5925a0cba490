"""Picks sent since an endpoint's last scrape."""

from __future__ import annotations

from epp.pending import PendingPicks


def test_counts_picks_at_or_after_an_instant() -> None:
    pending = PendingPicks(horizon_s=10.0)
    pending.record("a:1", at=1.0, tokens=100)
    pending.record("a:1", at=2.0, tokens=20)
    pending.record("a:1", at=3.0, tokens=3)
    pending.record("b:1", at=2.5, tokens=7)
    assert pending.since("a:1", 0.0) == (3, 123)
    assert pending.since("a:1", 2.0) == (2, 23)  # at or after
    assert pending.since("a:1", 2.1) == (1, 3)
    assert pending.since("a:1", 3.5) == (0, 0)
    assert pending.since("b:1", 0.0) == (1, 7)
    assert pending.since("unknown:1", 0.0) == (0, 0)


def test_picks_older_than_the_horizon_are_dropped() -> None:
    pending = PendingPicks(horizon_s=1.0)
    pending.record("a:1", at=0.0, tokens=1)
    pending.record("a:1", at=0.5, tokens=2)
    pending.record("a:1", at=1.2, tokens=4)  # 0.0 < 1.2 - 1.0: the first is dropped, 0.5 is kept
    assert pending.since("a:1", -100.0) == (2, 6)
    pending.record("a:1", at=5.0, tokens=8)
    assert pending.since("a:1", -100.0) == (1, 8)


def test_forget() -> None:
    pending = PendingPicks(horizon_s=1.0)
    pending.record("a:1", at=0.0, tokens=1)
    pending.forget("a:1")
    pending.forget("unknown:1")
    assert pending.since("a:1", -1.0) == (0, 0)
