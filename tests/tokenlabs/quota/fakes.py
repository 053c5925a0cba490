"""Doubles and metric readers shared by the fail-over and replay tests."""

import asyncio
import time
from collections.abc import Callable, Sequence

from tests.helpers import metric_samples
from tokenlabs.quota.memory import MemoryQuotaStore
from tokenlabs.quota.store import Adjustment, QuotaStoreError
from tokenlabs.quota.windows import Admission, Limit, WindowState
from tokenlabs.telemetry import Telemetry


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FlakyStore(MemoryQuotaStore):
    """Counts the calls that reach it; fails them while ``failing``; holds them while ``hold`` is unset. Records
    each ``adjust_many`` batch it applies in ``replays``."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.failing = False
        self.calls = 0
        self.hold = asyncio.Event()
        self.hold.set()
        self.replays: list[list[Adjustment]] = []

    async def _reached(self) -> None:
        self.calls += 1
        await self.hold.wait()
        if self.failing:
            raise QuotaStoreError("store down") from ConnectionError("connection refused")

    async def acquire(self, scope: str, limits: Sequence[Limit], amount: int = 1) -> Admission:
        await self._reached()
        return await super().acquire(scope, limits, amount)

    async def adjust(self, scope: str, windows: Sequence[WindowState], delta: int) -> None:
        await self._reached()
        await super().adjust(scope, windows, delta)

    async def adjust_many(self, adjustments: Sequence[Adjustment]) -> None:
        await self._reached()
        self.replays.append(list(adjustments))
        for scope, windows, delta in adjustments:
            await super().adjust(scope, windows, delta)

    async def peek(self, scope: str, limits: Sequence[Limit]) -> tuple[WindowState, ...]:
        await self._reached()
        return await super().peek(scope, limits)


def metric(telemetry: Telemetry, name: str, **labels: str) -> float:
    """One sample's value, 0 when it has not been recorded."""
    samples = metric_samples(telemetry.render().decode())
    return samples.get((name, frozenset(labels.items())), 0.0)


def errors(telemetry: Telemetry, operation: str = "acquire", error: str = "ConnectionError") -> float:
    return metric(telemetry, "tokenlabs_quota_store_errors_total", operation=operation, error=error)


async def until(condition: Callable[[], bool], timeout_s: float = 3.0) -> None:
    """Wait for a background task to make ``condition`` true."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"still false after {timeout_s}s"
        await asyncio.sleep(0.005)
