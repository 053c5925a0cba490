"""Adjustments the shared quota store could not take yet, held in this process until they can be replayed.

One entry per (scope, window length, window index): adjusts of the same window are coalesced by summing their
deltas (the sum is applied once, so where a counter would have been clamped at zero in between it ends a little
higher than the separate adjusts would have left it). An entry is held

- in this process's memory only: whatever is held when the process ends is lost;
- at most until its window ends by this process's clock (a day for day windows): an adjust of a past window is a
  no-op by contract, so the entry is dropped then (``reason="window_ended"``);
- at most ``capacity`` entries: beyond that the entry whose window ends first is dropped (``reason="overflow"``).

``failover`` decides when entries are added and replayed. Not thread-safe: one event loop owns it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence

from opentelemetry.metrics import CallbackOptions, Observation

from tokenlabs.quota.store import Adjustment
from tokenlabs.quota.windows import Limit, WindowState
from tokenlabs.telemetry import Telemetry

log = logging.getLogger(__name__)

Key = tuple[str, int, int]  # scope, window seconds, window index


class PendingAdjustments:
    """Held entries, grouped by the time their window ends: there are about as many distinct end times as window
    lengths, so ended windows and the first-ending entry are found without scanning the entries."""

    def __init__(self, telemetry: Telemetry, capacity: int, clock: Callable[[], float] = time.time) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self._capacity = capacity
        self._clock = clock
        # window end (Unix seconds) -> entries in the order first held: key -> (a state of the window, summed delta)
        self._by_end: dict[int, dict[Key, tuple[WindowState, int]]] = {}
        self._held = 0
        self._in_flight = 0  # handed to a write that has not returned yet
        self._replayed = telemetry.counter(
            "tokenlabs_quota_store_adjustments_replayed",
            "Held quota adjustments (one per scope and window) written to the shared store once it answered.",
            (),
        )
        self._dropped = telemetry.counter(
            "tokenlabs_quota_store_adjustments_dropped",
            "Held quota adjustments given up, by reason (window_ended, overflow).",
            ("reason",),
        )
        telemetry.meter.create_observable_gauge(
            "tokenlabs_quota_store_pending_adjustments",
            callbacks=[self._observe],
            description="Quota adjustments held for the shared store (one per scope and window), replays included.",
        )

    def __len__(self) -> int:
        """Entries held and not taken for a replay."""
        return self._held

    def _observe(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._held + self._in_flight)]

    def add(self, scope: str, windows: Sequence[WindowState], delta: int) -> None:
        """Hold ``adjust(scope, windows, delta)``: summed into the entry of each window that has not ended."""
        if delta == 0:
            return
        now = self._clock()
        self._expire(now)
        for state in windows:
            end = (state.index + 1) * state.limit.seconds
            if end <= now:
                self._dropped.add(("window_ended",))
                continue
            group = self._by_end.setdefault(end, {})
            key = (scope, state.limit.seconds, state.index)
            held = group.get(key)
            if held is None:
                group[key] = (state, delta)
                self._held += 1
            elif held[1] + delta == 0:
                self._remove(end, key)
            else:
                group[key] = (held[0], held[1] + delta)
        while self._held > self._capacity:
            end = min(self._by_end)
            self._remove(end, next(iter(self._by_end[end])))
            self._dropped.add(("overflow",))

    def _remove(self, end: int, key: Key) -> tuple[WindowState, int]:
        group = self._by_end[end]
        entry = group.pop(key)
        if not group:
            del self._by_end[end]
        self._held -= 1
        return entry

    def _expire(self, now: float) -> None:
        for end in [end for end in self._by_end if end <= now]:
            dropped = len(self._by_end.pop(end))
            self._held -= dropped
            self._dropped.add(("window_ended",), dropped)

    def expire_ended(self) -> int:
        """Drop the entries whose window has ended; returns how many are left held."""
        self._expire(self._clock())
        return self._held

    def first(self) -> tuple[str, Limit] | None:
        """The scope and limit of the entry whose window ends first, or None when nothing is held."""
        if not self._by_end:
            return None
        (scope, _, _), (state, _) = next(iter(self._by_end[min(self._by_end)].items()))
        return scope, state.limit

    def _take(self, limit: int) -> list[Adjustment]:
        """Remove up to ``limit`` entries, the first-ending first, as adjustments: one per scope and delta, so that
        a scope's windows with the same sum go in one call."""
        self._expire(self._clock())
        grouped: dict[tuple[str, int], list[WindowState]] = {}
        taken = 0
        for end in sorted(self._by_end):
            while taken < limit and end in self._by_end:
                key = next(iter(self._by_end[end]))
                state, delta = self._remove(end, key)
                grouped.setdefault((key[0], delta), []).append(state)
                taken += 1
        return [(scope, tuple(windows), delta) for (scope, delta), windows in grouped.items()]

    async def replay(self, write: Callable[[list[Adjustment]], Awaitable[None]], batch_size: int) -> None:
        """Hand what is held to ``write``, ``batch_size`` entries a call, until nothing is; logs how many went.
        When ``write`` raises (or is cancelled) its batch is held again, coalesced with what was added meanwhile,
        and the exception propagates."""
        replayed = 0
        try:
            while batch := self._take(batch_size):
                size = sum(len(windows) for _, windows, _ in batch)
                self._in_flight += size
                try:
                    await write(batch)
                except BaseException:
                    for scope, windows, delta in batch:
                        self.add(scope, windows, delta)
                    raise
                finally:
                    self._in_flight -= size
                self._replayed.add((), size)
                replayed += size
        finally:
            if replayed:
                log.info(
                    "replayed %d quota adjustments held while the store was unreachable",
                    replayed,
                    extra={"still_held": self._held},
                )
