"""Adjusts the primary could not take are held and written once it answers again (``failover`` and ``pending``)."""

import asyncio
import dataclasses
import logging

import pytest

from tests.redis_server import RedisServer
from tests.tokenlabs.quota.fakes import Clock, FlakyStore, errors, metric, until
from tokenlabs.quota.failover import FailoverQuotaStore
from tokenlabs.quota.redis_store import RedisQuotaStore
from tokenlabs.quota.store import QuotaStoreError
from tokenlabs.quota.windows import DAY, MINUTE, Limit
from tokenlabs.telemetry import Telemetry

# Clock() starts at 1000.0: the minute window (index 16) ends at 1020, the day window long after.
PER_MINUTE = Limit("minute", MINUTE, 100)
PER_DAY = Limit("day", DAY, 1000)
BACKOFF_S = 0.5


def pending(telemetry: Telemetry) -> float:
    return metric(telemetry, "tokenlabs_quota_store_pending_adjustments")


def replayed(telemetry: Telemetry) -> float:
    return metric(telemetry, "tokenlabs_quota_store_adjustments_replayed_total")


def dropped(telemetry: Telemetry, reason: str) -> float:
    return metric(telemetry, "tokenlabs_quota_store_adjustments_dropped_total", reason=reason)


async def test_held_adjusts_are_coalesced_and_written_after_the_next_successful_call(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    clock, wall = Clock(), Clock()
    primary = FlakyStore(wall)
    store = FailoverQuotaStore(primary, "open", telemetry, clock=clock, wall_clock=wall)
    caplog.set_level(logging.INFO, logger="tokenlabs.quota")
    try:
        shared = await store.acquire("tokens:acme", (PER_MINUTE, PER_DAY), 50)
        primary.failing = True
        await store.adjust("tokens:acme", shared.windows, -30)  # fails: the circuit opens
        calls = primary.calls
        await store.adjust("tokens:acme", shared.windows, 5)  # skipped
        assert primary.calls == calls and pending(telemetry) == 2 and replayed(telemetry) == 0
        clock.now += BACKOFF_S
        primary.failing = False
        assert (await store.acquire("requests:acme", (PER_MINUTE,))).admitted  # the probe; the replay follows
        await until(lambda: replayed(telemetry) == 2)
        # One call: the scope's two windows share their sum.
        assert primary.replays == [[("tokens:acme", shared.windows, -25)]]
        assert [w.used for w in await primary.peek("tokens:acme", (PER_MINUTE, PER_DAY))] == [25, 25]
        assert pending(telemetry) == 0
        assert [r.getMessage() for r in caplog.records if r.name == "tokenlabs.quota.pending"] == [
            "replayed 2 quota adjustments held while the store was unreachable"
        ]
    finally:
        await store.close()


async def test_a_failed_replay_stays_held_and_is_retried_after_a_read_probe(telemetry: Telemetry) -> None:
    clock, wall = Clock(), Clock()
    primary = FlakyStore(wall)
    store = FailoverQuotaStore(primary, "closed", telemetry, clock=clock, wall_clock=wall, replay_interval_s=0.01)
    try:
        shared = await store.acquire("tokens:acme", (PER_MINUTE,), 5)
        primary.failing = True
        await store.adjust("tokens:acme", shared.windows, -3)
        clock.now += BACKOFF_S
        primary.failing = False
        await store.peek("tokens:acme", (PER_MINUTE,))  # the probe succeeds and wakes the replay...
        primary.failing = True  # ...which finds the store down again
        await until(lambda: errors(telemetry, "replay") == 1)
        assert pending(telemetry) == 1 and replayed(telemetry) == 0 and store.degraded
        primary.failing = False
        calls = primary.calls
        clock.now += BACKOFF_S
        await until(lambda: replayed(telemetry) == 1)  # the periodic try, with no request to wake it
        assert primary.calls == calls + 2 and len(primary.replays) == 1  # a peek, then the write
        assert not store.degraded and pending(telemetry) == 0
        assert [w.used for w in await primary.peek("tokens:acme", (PER_MINUTE,))] == [2]
    finally:
        await store.close()


async def test_an_adjust_is_held_only_until_its_window_ends(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    clock, wall = Clock(), Clock()
    primary = FlakyStore(wall)
    store = FailoverQuotaStore(primary, "open", telemetry, clock=clock, wall_clock=wall, replay_interval_s=0.01)
    try:
        shared = await store.acquire("tokens:acme", (PER_MINUTE, PER_DAY), 10)
        primary.failing = True
        await store.adjust("tokens:acme", shared.windows, -4)
        past = dataclasses.replace(shared.windows[0], index=shared.windows[0].index - 1)
        await store.adjust("tokens:acme", (past,), -1)  # ended already: nothing to hold
        assert pending(telemetry) == 2 and dropped(telemetry, "window_ended") == 1
        wall.now = 1020.0
        await until(lambda: pending(telemetry) == 1)  # the minute's is dropped by the replay task, the day's held
        assert dropped(telemetry, "window_ended") == 2
    finally:
        caplog.set_level(logging.WARNING, logger="tokenlabs.quota.failover")
        await store.close()  # the store is still down: the last try fails
    assert primary.replays == [] and pending(telemetry) == 1
    assert [r.getMessage() for r in caplog.records if r.name == "tokenlabs.quota.failover"][-1] == (
        "closing with 1 quota adjustments not written to the store: lost"
    )


async def test_beyond_the_capacity_the_first_ending_are_dropped(telemetry: Telemetry) -> None:
    clock, wall = Clock(), Clock()
    primary = FlakyStore(wall)
    store = FailoverQuotaStore(primary, "open", telemetry, clock=clock, wall_clock=wall, max_pending=2)
    try:
        held = [
            (scope, await store.acquire(scope, (limit,), 10))
            for scope, limit in (("tokens:a", PER_DAY), ("tokens:b", PER_MINUTE), ("tokens:c", PER_MINUTE))
        ]
        primary.failing = True
        for scope, admission in held:
            await store.adjust(scope, admission.windows, -1)
        assert pending(telemetry) == 2 and dropped(telemetry, "overflow") == 1
        clock.now += BACKOFF_S
        primary.failing = False
        await store.peek("tokens:a", (PER_DAY,))
        await until(lambda: replayed(telemetry) == 2)
        # b's minute ended first with c's, and was held first.
        assert sorted(scope for batch in primary.replays for scope, _, _ in batch) == ["tokens:a", "tokens:c"]
    finally:
        await store.close()


async def test_close_cancels_a_replay_in_flight_and_writes_it_once(telemetry: Telemetry) -> None:
    clock, wall = Clock(), Clock()
    primary = FlakyStore(wall)
    store = FailoverQuotaStore(primary, "open", telemetry, clock=clock, wall_clock=wall)
    try:
        shared = await store.acquire("tokens:acme", (PER_MINUTE,), 5)
        primary.failing = True
        await store.adjust("tokens:acme", shared.windows, -2)
        clock.now += BACKOFF_S
        primary.failing = False
        await store.peek("tokens:acme", (PER_MINUTE,))
        primary.hold.clear()
        calls = primary.calls
        await until(lambda: primary.calls == calls + 1)  # the replay's write waits in the store
        closing = asyncio.ensure_future(store.close())
        await until(lambda: primary.calls == calls + 2)  # cancelled, held again, and tried again by close()
        assert pending(telemetry) == 1 and replayed(telemetry) == 0
        primary.hold.set()
        await closing
        assert replayed(telemetry) == 1 and pending(telemetry) == 0
        assert primary.replays == [[("tokens:acme", shared.windows, -2)]]  # the cancelled write never ran
    finally:
        primary.hold.set()
        await store.close()


async def test_adjusts_held_through_a_redis_outage_are_written_once_it_answers(
    redis_server: RedisServer, telemetry: Telemetry
) -> None:
    store = FailoverQuotaStore(RedisQuotaStore(redis_server.url, 0.2), "open", telemetry, replay_interval_s=0.05)
    check = RedisQuotaStore(redis_server.url, 1.0)
    limits = (PER_DAY,)
    try:
        admission = await store.acquire("tokens:acme", limits, 100)
        redis_server.pause()  # SIGSTOP: Redis keeps its counts, as it would through a network partition
        await store.peek("tokens:acme", limits)  # times out (a read: harmless when Redis runs it later)
        await store.adjust("tokens:acme", admission.windows, -60)
        await store.adjust("tokens:acme", admission.windows, 5)
        assert errors(telemetry, "peek", "TimeoutError") == 1 and pending(telemetry) == 1
        redis_server.resume()
        await until(lambda: replayed(telemetry) == 1)
        assert [w.used for w in await check.peek("tokens:acme", limits)] == [45]
        assert pending(telemetry) == 0 and not store.degraded
    finally:
        await store.close()
        await check.close()


async def test_close_writes_what_is_held_once_redis_is_back(redis_server: RedisServer, telemetry: Telemetry) -> None:
    store = FailoverQuotaStore(RedisQuotaStore(redis_server.url, 0.2), "closed", telemetry)
    check = RedisQuotaStore(redis_server.url, 1.0)
    limits = (PER_DAY,)
    try:
        admission = await store.acquire("tokens:acme", limits, 100)
        redis_server.pause()
        with pytest.raises(QuotaStoreError, match="timed out"):
            await store.peek("tokens:acme", limits)
        await store.adjust("tokens:acme", admission.windows, -60)  # skipped, held
        redis_server.resume()  # and close at once, before the backoff would let the replay task try
        await store.close()
        assert [w.used for w in await check.peek("tokens:acme", limits)] == [40]
        assert replayed(telemetry) == 1 and pending(telemetry) == 0
    finally:
        await check.close()
