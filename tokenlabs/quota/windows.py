"""Fixed, clock-aligned counting windows and the values a store reports about them.

A window of ``seconds`` length has index ``floor(now / seconds)``: minute windows start on the minute and day
windows at 00:00 UTC, whoever counts. The window a hit lands in is computed from the clock, never from when a
counter was first created, so windows do not drift with key expiry (Limitador's TTL windows do) and every replica
sharing a store agrees on them (the Redis store reads the Redis server's clock).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MINUTE = 60
DAY = 86_400


@dataclass(frozen=True)
class Limit:
    """At most ``limit`` units per window of ``seconds``; ``name`` labels it ("minute", "day")."""

    name: str
    seconds: int
    limit: int


@dataclass(frozen=True)
class WindowState:
    """One window's counter after an operation. ``index`` identifies the window (to adjust it later)."""

    limit: Limit
    index: int
    used: int
    reset_s: float  # seconds until this window ends
    fits: bool = True  # whether the amount asked for fitted in this window

    @property
    def remaining(self) -> int:
        return max(self.limit.limit - self.used, 0)


@dataclass(frozen=True)
class Admission:
    """The answer to ``acquire``: admitted (and counted in every window) or refused (counted in none)."""

    admitted: bool
    windows: tuple[WindowState, ...]

    @property
    def binding(self) -> WindowState | None:
        """The window the client is closest to exhausting: least remaining, then the one ending last."""
        if not self.windows:
            return None
        return min(self.windows, key=lambda state: (state.remaining, -state.reset_s))

    @property
    def retry_after_s(self) -> float:
        """When refused: seconds until every window that refused has reset."""
        blocked = [state.reset_s for state in self.windows if not state.fits]
        return max(blocked, default=0.0)


def window_index(now: float, seconds: int) -> int:
    return math.floor(now / seconds)


def window_reset(now: float, seconds: int) -> float:
    return (window_index(now, seconds) + 1) * seconds - now


def validate_limits(limits: Sequence[Limit]) -> None:
    seen = set()
    for limit in limits:
        if limit.seconds <= 0 or limit.limit < 0:
            raise ValueError(f"invalid limit {limit}")
        if limit.seconds in seen:
            raise ValueError(f"two limits share a {limit.seconds}s window")
        seen.add(limit.seconds)
