"""Counters in this process: exact for one replica (the local default), and the fail-open fallback for Redis.

One event loop owns the store, and no call awaits between reading and writing, so each call is atomic. Each
(scope, window length) keeps only its current window's count; a counter from a past window reads as zero.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from tokenlabs.quota.windows import Admission, Limit, WindowState, window_index, window_reset


class MemoryQuotaStore:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        # (scope, window seconds) -> [window index, used]
        self._counters: dict[tuple[str, int], list[int]] = {}

    def _used(self, scope: str, seconds: int, index: int) -> int:
        counter = self._counters.get((scope, seconds))
        return counter[1] if counter is not None and counter[0] == index else 0

    async def acquire(self, scope: str, limits: Sequence[Limit], amount: int = 1) -> Admission:
        # One pass to read and check, one to write: this runs on every authorization check.
        now = self._clock()
        counters = self._counters
        current = []
        admitted = True
        for limit in limits:
            index = int(now // limit.seconds)
            counter = counters.get((scope, limit.seconds))
            used = counter[1] if counter is not None and counter[0] == index else 0
            fits = used + amount <= limit.limit
            admitted = admitted and fits
            current.append((limit, index, used, fits))
        states = []
        for limit, index, used, fits in current:
            if admitted:
                used += amount
                counters[(scope, limit.seconds)] = [index, used]
            states.append(WindowState(limit, index, used, (index + 1) * limit.seconds - now, fits))
        return Admission(admitted, tuple(states))

    async def adjust(self, scope: str, windows: Sequence[WindowState], delta: int) -> None:
        for state in windows:
            counter = self._counters.get((scope, state.limit.seconds))
            if counter is not None and counter[0] == state.index:
                counter[1] = max(counter[1] + delta, 0)

    async def peek(self, scope: str, limits: Sequence[Limit]) -> tuple[WindowState, ...]:
        now = self._clock()
        states = []
        for limit in limits:
            index = window_index(now, limit.seconds)
            states.append(
                WindowState(limit, index, self._used(scope, limit.seconds, index), window_reset(now, limit.seconds))
            )
        return tuple(states)

    async def close(self) -> None:
        self._counters.clear()
