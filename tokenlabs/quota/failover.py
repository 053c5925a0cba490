"""A shared store behind a circuit breaker, and what to do while it is unreachable.

``mode="closed"``: a primary failure is raised as ``QuotaStoreError`` (callers answer 503). ``mode="open"``:
the call is served by ``fallback`` instead (a ``MemoryQuotaStore`` by default: each replica counts locally, so
the overshoot is bounded by replicas times the limit).

The circuit: after a primary failure the primary is skipped for a backoff (0.5 s, doubling up to 8 s while probes
keep failing); calls in that time fail at once (closed) or go straight to the fallback (open). The first call after
the backoff probes the primary while the others still skip it; a successful probe closes the circuit. So a dead
store costs one timeout per backoff, not one per request, and its return is noticed without a restart.

``adjust`` goes to the store that counted the acquire: windows counted by the fallback come back as
``LocalWindowState`` and are settled in the fallback; all others in the primary. An adjust for the primary that
can not reach it is dropped in open mode (the fallback never held that count) and raised in closed mode.
``fallback`` is used in open mode only. Its counts stay after the primary recovers, so a replica that fails over
again within the same window resumes from them rather than from zero.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

from opentelemetry.metrics import CallbackOptions, Observation

from tokenlabs.quota.memory import MemoryQuotaStore
from tokenlabs.quota.store import QuotaStore, QuotaStoreError
from tokenlabs.quota.windows import Admission, Limit, WindowState
from tokenlabs.telemetry import Telemetry

log = logging.getLogger(__name__)

INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
MODES = ("open", "closed")

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class LocalWindowState(WindowState):
    """A window counted by the fallback while the primary was unreachable; ``adjust`` settles it there."""


def _local(state: WindowState) -> LocalWindowState:
    return LocalWindowState(**{f.name: getattr(state, f.name) for f in dataclasses.fields(state)})


def _error_name(error: QuotaStoreError) -> str:
    """The class of the underlying failure (``ConnectionError``, ``TimeoutError``), for a metric label."""
    return type(error.__cause__ or error).__name__


class FailoverQuotaStore:
    """The ``QuotaStore`` contract over ``primary``, with the failure mode and circuit described above."""

    def __init__(
        self,
        primary: QuotaStore,
        mode: str,
        telemetry: Telemetry,
        fallback: QuotaStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"failure mode must be one of {MODES}, not {mode!r}")
        self._primary = primary
        self._fallback: QuotaStore | None = None
        if mode == "open":
            self._fallback = fallback if fallback is not None else MemoryQuotaStore()
        self._clock = clock
        self._backoff_s = INITIAL_BACKOFF_S
        self._open_until: float | None = None  # None while the circuit is closed
        self._opened_at = 0.0
        self._probing = False
        self._last_error = ""
        self._errors = telemetry.counter(
            "tokenlabs_quota_store_errors", "Failed quota store calls, by operation and error.", ("operation", "error")
        )
        self._fallbacks = telemetry.counter(
            "tokenlabs_quota_store_fallbacks", "Quota store calls served by local counting.", ("operation",)
        )
        telemetry.meter.create_observable_gauge(
            "tokenlabs_quota_store_degraded",
            callbacks=[self._observe_degraded],
            description="1 while the shared quota store is skipped after a failure, else 0.",
        )

    @property
    def degraded(self) -> bool:
        return self._open_until is not None

    def _observe_degraded(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(1 if self.degraded else 0)]

    async def _guarded(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call`` on the primary unless the circuit skips it; raise ``QuotaStoreError`` when it did not run
        or failed."""
        probe = False
        if self._open_until is not None:
            if self._probing or self._clock() < self._open_until:
                raise QuotaStoreError(f"quota store skipped after a failure: {self._last_error}")
            probe = self._probing = True
        try:
            result = await call()
        except QuotaStoreError as error:
            self._failed(operation, error, probe)
            raise
        finally:
            if probe:
                self._probing = False
        if probe:
            self._open_until = None
            self._backoff_s = INITIAL_BACKOFF_S
            log.info(
                "quota store reachable again",
                extra={"operation": operation, "degraded_s": round(self._clock() - self._opened_at, 3)},
            )
        return result

    def _failed(self, operation: str, error: QuotaStoreError, probe: bool) -> None:
        self._errors.add((operation, _error_name(error)))
        self._last_error = str(error)
        if probe:
            self._backoff_s = min(self._backoff_s * 2, MAX_BACKOFF_S)
        elif self._open_until is not None:
            # Started before the circuit opened: the failure that opened it already set the backoff.
            return
        else:
            self._opened_at = self._clock()
            log.warning(
                "quota store unreachable (%s), %s until it answers again",
                self._last_error,
                "counting in this replica" if self._fallback is not None else "refusing",
                extra={"operation": operation},
            )
        self._open_until = self._clock() + self._backoff_s

    async def acquire(self, scope: str, limits: Sequence[Limit], amount: int = 1) -> Admission:
        try:
            return await self._guarded("acquire", lambda: self._primary.acquire(scope, limits, amount))
        except QuotaStoreError:
            if self._fallback is None:
                raise
            self._fallbacks.add(("acquire",))
            admission = await self._fallback.acquire(scope, limits, amount)
        return Admission(admission.admitted, tuple(_local(state) for state in admission.windows))

    async def adjust(self, scope: str, windows: Sequence[WindowState], delta: int) -> None:
        local = [state for state in windows if isinstance(state, LocalWindowState)]
        shared = [state for state in windows if not isinstance(state, LocalWindowState)]
        if local and self._fallback is not None:
            self._fallbacks.add(("adjust",))
            await self._fallback.adjust(scope, local, delta)
        if shared:
            try:
                await self._guarded("adjust", lambda: self._primary.adjust(scope, shared, delta))
            except QuotaStoreError:
                if self._fallback is None:
                    raise

    async def peek(self, scope: str, limits: Sequence[Limit]) -> tuple[WindowState, ...]:
        try:
            return await self._guarded("peek", lambda: self._primary.peek(scope, limits))
        except QuotaStoreError:
            if self._fallback is None:
                raise
            self._fallbacks.add(("peek",))
            states = await self._fallback.peek(scope, limits)
        return tuple(_local(state) for state in states)

    async def close(self) -> None:
        await self._primary.close()
        if self._fallback is not None:
            await self._fallback.close()
