"""One pick, start to end: pool lookup → candidates → saturation handling → scheduling cycle → bookkeeping.

``EndpointPicker.choose`` is what the ext_proc servicer calls and what the routing benchmark calls in-process.
It raises ``Unavailable`` (503: no pool, no endpoint with fresh metrics, none passes the filters) or ``RateLimited``
(429: the pool is saturated and the saturation mode sheds, or the picker's queue of saturated requests is full).
A queued request that times out is sent anyway (reason "saturated").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from epp.metrics.snapshot import MetricsBoard
from epp.pending import PendingPicks
from epp.pools.directory import Pool, PoolDirectory
from epp.saturation import saturated
from epp.scheduling.framework import Decision, Scheduler, candidates
from epp.scheduling.interfaces import Candidate, SchedulingRequest
from tokenlabs.errors import RateLimited, Unavailable
from tokenlabs.picker_settings import EppSettings, SaturationMode

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Pick:
    pool: Pool
    decision: Decision
    reason: str  # scheduled | queued (waited for room) | saturated (sent to a saturated pool)


class EndpointPicker:
    def __init__(
        self,
        pools: PoolDirectory,
        board: MetricsBoard,
        scheduler: Scheduler,
        settings: EppSettings,
        clock: Clock = time.monotonic,
    ) -> None:
        self._pools = pools
        self._board = board
        self._scheduler = scheduler
        self._settings = settings
        self._clock = clock
        self._pending = PendingPicks(horizon_s=settings.metrics_staleness_s)
        self._queued = 0

    @property
    def queued(self) -> int:
        return self._queued

    def forget(self, addresses: Collection[str]) -> None:
        """Endpoints that left their pools: their recent picks, prefix blocks and backlog go too."""
        for address in addresses:
            self._pending.forget(address)
            self._scheduler.forget(address)

    async def choose(self, request: SchedulingRequest, subset_hint: Collection[str] | None = None) -> Pick:
        pool = self._pools.for_model(request.model)
        if pool is None:
            raise Unavailable(f"No inference pool serves the model '{request.model}'.", code="no_pool")
        found = self._candidates(pool, subset_hint)
        reason = "scheduled"
        saturation = self._settings.saturation
        if saturation.mode is not SaturationMode.OFF and saturated(found, saturation):
            if saturation.mode is SaturationMode.SHED:
                raise RateLimited(
                    f"Every endpoint of pool '{pool.name}' is saturated; retry later.",
                    code="pool_saturated",
                    retry_after_s=1,
                )
            found, reason = await self._wait_for_room(pool, subset_hint)
        decision = self._scheduler.schedule(request, found)
        self._pending.record(decision.chosen.address, self._clock(), decision.uncached_tokens)
        return Pick(pool, decision, reason)

    def _candidates(self, pool: Pool, subset_hint: Collection[str] | None) -> list[Candidate]:
        return candidates(
            pool.endpoints,
            self._board.current,
            self._pending,
            self._clock(),
            self._settings.metrics_staleness_s,
            subset_hint,
        )

    async def _wait_for_room(self, pool: Pool, subset_hint: Collection[str] | None) -> tuple[list[Candidate], str]:
        """Hold the request until a scrape shows room (then it is "queued"), or until the timeout (then it is sent
        anyway, "saturated": the workers queue it, nothing is lost)."""
        saturation = self._settings.saturation
        if self._queued >= saturation.max_queued:
            raise RateLimited(
                f"The picker's queue for saturated pools is full ({saturation.max_queued}).",
                code="queue_full",
                retry_after_s=1,
            )
        self._queued += 1
        try:
            async with asyncio.timeout(saturation.queue_timeout_s):
                while True:
                    await self._board.changed()
                    found = self._candidates(pool, subset_hint)
                    if not saturated(found, saturation):
                        return found, "queued"
        except TimeoutError:
            return self._candidates(pool, subset_hint), "saturated"
        finally:
            self._queued -= 1
