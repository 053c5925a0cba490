import asyncio
import logging
import time

import pytest

from tests.redis_server import RedisServer
from tests.tokenlabs.quota.fakes import Clock, FlakyStore, errors, metric, until
from tokenlabs.quota.failover import FailoverQuotaStore, LocalWindowState
from tokenlabs.quota.memory import MemoryQuotaStore
from tokenlabs.quota.redis_store import RedisQuotaStore
from tokenlabs.quota.store import QuotaStoreError
from tokenlabs.quota.windows import DAY, MINUTE, Limit
from tokenlabs.telemetry import Telemetry

LIMITS = (Limit("minute", MINUTE, 5),)
BACKOFFS = (0.5, 1.0, 2.0, 4.0, 8.0, 8.0)


def degraded(telemetry: Telemetry) -> float:
    return metric(telemetry, "tokenlabs_quota_store_degraded")


def fallbacks(telemetry: Telemetry, operation: str = "acquire") -> float:
    return metric(telemetry, "tokenlabs_quota_store_fallbacks_total", operation=operation)


def test_only_known_failure_modes(telemetry: Telemetry) -> None:
    with pytest.raises(ValueError, match="failure mode"):
        FailoverQuotaStore(FlakyStore(), "maybe", telemetry)


async def test_closed_circuit_skips_the_primary_for_a_doubling_backoff(telemetry: Telemetry) -> None:
    primary, clock = FlakyStore(), Clock()
    store = FailoverQuotaStore(primary, "closed", telemetry, clock=clock)
    primary.failing = True
    with pytest.raises(QuotaStoreError, match="store down"):
        await store.acquire("requests:acme", LIMITS)
    opened_at = clock.now
    for backoff in BACKOFFS:
        clock.now = opened_at + backoff - 0.01
        for _ in range(10):
            with pytest.raises(QuotaStoreError, match="skipped after a failure: store down"):
                await store.acquire("requests:acme", LIMITS)
        calls = primary.calls
        clock.now = opened_at = opened_at + backoff
        with pytest.raises(QuotaStoreError, match="store down"):
            await store.peek("requests:acme", LIMITS)  # any operation probes
        assert primary.calls == calls + 1
    assert errors(telemetry) == 1 and errors(telemetry, "peek") == len(BACKOFFS)
    assert degraded(telemetry) == 1


async def test_a_successful_probe_closes_the_circuit_and_resets_the_backoff(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    primary, clock = FlakyStore(), Clock()
    store = FailoverQuotaStore(primary, "closed", telemetry, clock=clock)
    caplog.set_level(logging.INFO, logger="tokenlabs.quota.failover")
    primary.failing = True
    for _ in range(3):
        with pytest.raises(QuotaStoreError):
            await store.acquire("requests:acme", LIMITS)
        clock.now += 4.0  # past every backoff so far: each of these calls is a failing probe
    primary.failing = False
    assert (await store.acquire("requests:acme", LIMITS)).admitted
    assert not store.degraded and degraded(telemetry) == 0
    assert [(r.levelname, r.getMessage().split(" (")[0]) for r in caplog.records] == [
        ("WARNING", "quota store unreachable"),
        ("INFO", "quota store reachable again"),
    ]
    primary.failing = True
    with pytest.raises(QuotaStoreError):
        await store.acquire("requests:acme", LIMITS)
    clock.now += BACKOFFS[0]
    primary.failing = False
    assert (await store.acquire("requests:acme", LIMITS)).admitted


async def test_failures_of_calls_already_in_flight_do_not_extend_the_backoff(telemetry: Telemetry) -> None:
    primary, clock = FlakyStore(), Clock()
    store = FailoverQuotaStore(primary, "closed", telemetry, clock=clock)
    primary.hold.clear()
    calls = [asyncio.ensure_future(store.acquire("requests:acme", LIMITS)) for _ in range(5)]
    await asyncio.sleep(0)
    primary.failing = True
    primary.hold.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(result, QuotaStoreError) for result in results)
    assert errors(telemetry) == 5
    clock.now += BACKOFFS[0]
    primary.failing = False
    assert (await store.acquire("requests:acme", LIMITS)).admitted


async def test_one_probe_at_a_time_while_the_others_count_locally(telemetry: Telemetry) -> None:
    primary, clock = FlakyStore(), Clock()
    store = FailoverQuotaStore(primary, "open", telemetry, clock=clock)
    primary.failing = True
    assert isinstance((await store.acquire("requests:acme", LIMITS)).windows[0], LocalWindowState)
    clock.now += BACKOFFS[0]
    primary.failing = False
    primary.hold.clear()
    probe = asyncio.ensure_future(store.acquire("requests:acme", LIMITS))
    await asyncio.sleep(0)
    assert primary.calls == 2
    for _ in range(3):
        assert isinstance((await store.acquire("requests:acme", LIMITS)).windows[0], LocalWindowState)
    assert primary.calls == 2 and store.degraded
    primary.hold.set()
    admission = await probe
    assert admission.admitted and not isinstance(admission.windows[0], LocalWindowState)
    assert not store.degraded and fallbacks(telemetry) == 4


async def test_a_cancelled_probe_leaves_the_next_call_to_probe(telemetry: Telemetry) -> None:
    primary, clock = FlakyStore(), Clock()
    store = FailoverQuotaStore(primary, "closed", telemetry, clock=clock)
    primary.failing = True
    with pytest.raises(QuotaStoreError):
        await store.acquire("requests:acme", LIMITS)
    clock.now += BACKOFFS[0]
    primary.failing = False
    primary.hold.clear()
    probe = asyncio.ensure_future(store.acquire("requests:acme", LIMITS))
    await asyncio.sleep(0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    primary.hold.set()
    assert (await store.acquire("requests:acme", LIMITS)).admitted and not store.degraded
    assert primary.calls == 3


async def test_adjust_goes_to_the_store_that_counted(telemetry: Telemetry) -> None:
    primary, fallback, clock = FlakyStore(), MemoryQuotaStore(), Clock()
    store = FailoverQuotaStore(primary, "open", telemetry, fallback=fallback, clock=clock)
    try:
        shared = await store.acquire("tokens:acme", LIMITS, 4)
        primary.failing = True
        local = await store.acquire("tokens:acme", LIMITS, 3)
        assert local.admitted and isinstance(local.windows[0], LocalWindowState)
        await store.adjust("tokens:acme", local.windows, -1)
        assert [w.used for w in await fallback.peek("tokens:acme", LIMITS)] == [2]
        calls = primary.calls
        await store.adjust("tokens:acme", shared.windows, -2)  # circuit open: held for the primary, not counted here
        assert primary.calls == calls and [w.used for w in await fallback.peek("tokens:acme", LIMITS)] == [2]
        clock.now += BACKOFFS[0]
        primary.failing = False
        await store.adjust("tokens:acme", shared.windows, -1)  # the probe, then the held -2 is replayed
        await store.adjust("tokens:acme", local.windows, 1)
        await until(lambda: primary.replays != [])
        assert [w.used for w in await primary.peek("tokens:acme", LIMITS)] == [1]
        assert [w.used for w in await fallback.peek("tokens:acme", LIMITS)] == [3]
        assert fallbacks(telemetry, "adjust") == 2 and fallbacks(telemetry, "acquire") == 1
    finally:
        await store.close()


async def test_closed_mode_holds_an_adjust_it_can_not_apply(telemetry: Telemetry) -> None:
    primary = FlakyStore()
    store = FailoverQuotaStore(primary, "closed", telemetry, fallback=MemoryQuotaStore())
    try:
        admission = await store.acquire("tokens:acme", LIMITS, 2)
        primary.failing = True
        await store.adjust("tokens:acme", admission.windows, 1)  # not raised: held to be written later
        assert errors(telemetry, "adjust") == 1
        assert metric(telemetry, "tokenlabs_quota_store_pending_adjustments") == 1
        with pytest.raises(QuotaStoreError):
            await store.peek("tokens:acme", LIMITS)
        assert fallbacks(telemetry, "peek") == 0
    finally:
        await store.close()


async def test_closed_mode_against_a_killed_and_restarted_redis(
    redis_server: RedisServer, telemetry: Telemetry
) -> None:
    store = FailoverQuotaStore(RedisQuotaStore(redis_server.url, 0.5), "closed", telemetry)
    limits = (Limit("day", DAY, 5),)
    try:
        assert (await store.acquire("requests:acme", limits)).admitted
        assert degraded(telemetry) == 0
        redis_server.kill()
        started = time.monotonic()
        with pytest.raises(QuotaStoreError, match="ConnectionError"):
            await store.acquire("requests:acme", limits)
        assert time.monotonic() - started < 1
        started = time.monotonic()
        for _ in range(100):
            with pytest.raises(QuotaStoreError, match="skipped"):
                await store.acquire("requests:acme", limits)
        assert time.monotonic() - started < 0.1
        assert errors(telemetry) == 1 and degraded(telemetry) == 1
        redis_server.start()
        await asyncio.sleep(BACKOFFS[0])
        admission = await store.acquire("requests:acme", limits)
        assert admission.admitted and admission.windows[0].used == 1  # a fresh Redis: counting starts over
        assert degraded(telemetry) == 0 and errors(telemetry) == 1
    finally:
        await store.close()


async def test_open_mode_counts_locally_while_redis_is_down(redis_server: RedisServer, telemetry: Telemetry) -> None:
    fallback = MemoryQuotaStore()
    store = FailoverQuotaStore(RedisQuotaStore(redis_server.url, 0.5), "open", telemetry, fallback=fallback)
    limits = (Limit("day", DAY, 5),)
    try:
        for _ in range(3):
            assert (await store.acquire("tokens:acme", limits)).admitted
        redis_server.kill()
        local = [await store.acquire("tokens:acme", limits) for _ in range(6)]
        assert [admission.admitted for admission in local] == [True] * 5 + [False]
        assert all(isinstance(admission.windows[0], LocalWindowState) for admission in local)
        assert local[-1].retry_after_s > 0
        assert errors(telemetry) == 1 and fallbacks(telemetry) == 6 and degraded(telemetry) == 1
        redis_server.start()
        await asyncio.sleep(BACKOFFS[0])
        shared = await store.acquire("tokens:acme", limits)
        assert shared.admitted and shared.windows[0].used == 1 and not isinstance(shared.windows[0], LocalWindowState)
        assert degraded(telemetry) == 0
        await store.adjust("tokens:acme", local[0].windows, -4)
        await store.adjust("tokens:acme", shared.windows, 2)
        assert [w.used for w in await fallback.peek("tokens:acme", limits)] == [1]
        peeked = await store.peek("tokens:acme", limits)
        assert [w.used for w in peeked] == [3] and not isinstance(peeked[0], LocalWindowState)
    finally:
        await store.close()
