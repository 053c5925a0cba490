"""A shared store behind a circuit breaker, and what to do while it is unreachable.

``mode="closed"``: a primary failure of ``acquire`` or ``peek`` is raised as ``QuotaStoreError`` (callers answer
503). ``mode="open"``: the call is served by ``fallback`` instead (a ``MemoryQuotaStore`` by default: each
replica counts locally, so the overshoot is bounded by replicas times the limit).

The circuit: after a primary failure the primary is skipped for a backoff (0.5 s, doubling up to 8 s while probes
keep failing); calls in that time fail at once (closed) or go straight to the fallback (open). The first call after
the backoff probes the primary while the others still skip it; a successful probe closes the circuit. So a dead
store costs one timeout per backoff, not one per request, and its return is noticed without a restart.

``adjust`` goes to the store that counted the acquire: windows counted by the fallback come back as
``LocalWindowState`` and are settled in the fallback; all others in the primary. An adjust for the primary that
fails or is skipped is not raised, in either mode, but held (``pending``: coalesced per scope and window) and
replayed once the primary answers again:

- A background task owned by this store writes what is held with ``adjust_many``, 500 entries a round trip: at
  once after any successful primary call, and every ``replay_interval_s`` (1 s) while the circuit lets a call
  through. With the circuit open it first probes with a ``peek``: a hung server runs a timed-out call when it
  resumes, which for a write would apply it twice. A batch that fails stays held for the next try. No request
  waits for a replay.
- Held in this process's memory only, so a restart loses it; ``close()`` first makes one last try (a probe if
  the circuit is open, then the batches, each within the primary's timeout) and logs what is still held. Held at
  most until its window ends (a day for day windows) and at most ``max_pending`` entries (100,000; beyond that
  the first-ending are dropped).
- If Redis itself restarted empty, a replayed adjust finds no counter for its window and does nothing: the
  counts Redis lost are lost either way.
- At least once, not exactly once: a call that timed out may still have been applied, and is then applied again
  by the replay. That exposes the calls in flight when the primary stopped answering, an adjust that probes after
  a backoff, and the one replay batch in flight if it stops answering during a replay.

``fallback`` is used in open mode only. Its counts stay after the primary recovers, so a replica that fails over
again within the same window resumes from them rather than from zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol, TypeVar

from opentelemetry.metrics import CallbackOptions, Observation

from tokenlabs.quota.memory import MemoryQuotaStore
from tokenlabs.quota.pending import PendingAdjustments
from tokenlabs.quota.store import Adjustment, QuotaStore, QuotaStoreError
from tokenlabs.quota.windows import Admission, Limit, WindowState
from tokenlabs.telemetry import Telemetry

log = logging.getLogger(__name__)

INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
MODES = ("open", "closed")
MAX_PENDING = 100_000
REPLAY_BATCH = 500
REPLAY_INTERVAL_S = 1.0

T = TypeVar("T")


class PrimaryQuotaStore(QuotaStore, Protocol):
    """What the fail-over store needs of its primary: the contract, and ``adjust_many`` (each item as one
    ``adjust``, all in one round trip; after a failure any of them may have been applied) to replay with."""

    async def adjust_many(self, adjustments: Sequence[Adjustment]) -> None: ...


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
        primary: PrimaryQuotaStore,
        mode: str,
        telemetry: Telemetry,
        fallback: QuotaStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        max_pending: int = MAX_PENDING,
        replay_interval_s: float = REPLAY_INTERVAL_S,
    ) -> None:
        """``clock`` times the circuit; ``wall_clock`` (Unix time) tells when a held adjustment's window ends."""
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
        self._pending = PendingAdjustments(telemetry, max_pending, wall_clock)
        self._replay_interval_s = replay_interval_s
        self._replay_task: asyncio.Task[None] | None = None
        self._replay_wake = asyncio.Event()
        self._closed = False
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
        if self._skipping():
            raise QuotaStoreError(f"quota store skipped after a failure: {self._last_error}")
        probe = self._probing = self._open_until is not None
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
        if self._pending:
            self._wake_replay()
        return result

    def _skipping(self) -> bool:
        """Whether a call now skips the primary: the circuit is open and backing off or already probing."""
        return self._open_until is not None and (self._probing or self._clock() < self._open_until)

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
                self._pending.add(scope, shared, delta)
                self._wake_replay()

    async def peek(self, scope: str, limits: Sequence[Limit]) -> tuple[WindowState, ...]:
        try:
            return await self._guarded("peek", lambda: self._primary.peek(scope, limits))
        except QuotaStoreError:
            if self._fallback is None:
                raise
            self._fallbacks.add(("peek",))
            states = await self._fallback.peek(scope, limits)
        return tuple(_local(state) for state in states)

    def _wake_replay(self) -> None:
        """Start the replay task, or cut short its wait for the next try."""
        if self._closed:
            return
        if self._replay_task is None or self._replay_task.done():
            self._replay_task = asyncio.get_running_loop().create_task(self._replay())
        else:
            self._replay_wake.set()

    async def _replay(self) -> None:
        """Try to write what is held, then again when woken or after ``replay_interval_s``, until nothing is."""
        while self._pending.expire_ended():
            self._replay_wake.clear()  # before trying: a wake while it tries means "try again"
            await self._replay_once()
            if self._pending:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._replay_interval_s):
                        await self._replay_wake.wait()

    async def _replay_once(self) -> None:
        """Write what is held unless the circuit skips the primary; a failure leaves the rest held."""
        window = self._pending.first()
        if window is None or self._skipping():
            return
        with contextlib.suppress(QuotaStoreError):
            if self.degraded:
                scope, limit = window
                # A read: should this probe time out on a hung server, its late run changes nothing.
                await self._guarded("replay", functools.partial(self._primary.peek, scope, (limit,)))
            await self._pending.replay(self._write_batch, REPLAY_BATCH)

    async def _write_batch(self, batch: list[Adjustment]) -> None:
        await self._guarded("replay", functools.partial(self._primary.adjust_many, batch))

    async def close(self) -> None:
        """Stop replaying, then one last try to write what is held, probing first if the circuit is open (each call
        within the primary's timeout). What is still held after that is lost, and logged."""
        self._closed = True
        if self._replay_task is not None:
            self._replay_task.cancel()
            await asyncio.wait([self._replay_task])
        if self._pending and self._open_until is not None:
            # The last chance: probe now rather than after the backoff, at the cost of one timeout at most.
            self._open_until = min(self._open_until, self._clock())
        await self._replay_once()
        if self._pending:
            log.warning("closing with %d quota adjustments not written to the store: lost", len(self._pending))
        await self._primary.close()
        if self._fallback is not None:
            await self._fallback.close()
