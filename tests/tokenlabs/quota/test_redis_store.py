import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.redis_server import RedisServer
from tokenlabs.quota.redis_store import EXPIRY_GRACE_MS, RedisQuotaStore, counter_key
from tokenlabs.quota.store import QuotaStoreError
from tokenlabs.quota.windows import DAY, Limit, WindowState

HOUR = 3600
# Long windows: a test never straddles a window boundary except the ones that mean to.
PER_HOUR = Limit("hour", HOUR, 3)
PER_DAY = Limit("day", DAY, 5)
LIMITS = (PER_HOUR, PER_DAY)
TIMEOUT_S = 1.0


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisQuotaStore]:
    store = RedisQuotaStore(redis_server.url, TIMEOUT_S)
    yield store
    await store.close()


@pytest.fixture
async def inspect(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def server_now(client: Redis) -> float:
    seconds, micros = await client.time()
    return seconds + micros / 1e6


async def used(store: RedisQuotaStore, scope: str, limits: tuple[Limit, ...] = LIMITS) -> list[int]:
    return [state.used for state in await store.peek(scope, limits)]


async def test_acquire_counts_in_every_window_or_in_none(store: RedisQuotaStore) -> None:
    for expected in (1, 2, 3):
        admission = await store.acquire("requests:acme", LIMITS)
        assert admission.admitted and [w.used for w in admission.windows] == [expected, expected]
        assert all(w.fits for w in admission.windows)
    refused = await store.acquire("requests:acme", LIMITS)
    assert not refused.admitted
    assert [(w.used, w.fits) for w in refused.windows] == [(3, False), (3, True)]
    assert refused.binding is not None and refused.binding.limit is PER_HOUR
    assert 0 < refused.retry_after_s == refused.windows[0].reset_s <= HOUR
    assert await used(store, "requests:acme") == [3, 3]


async def test_an_amount_that_does_not_fit_is_not_counted_anywhere(store: RedisQuotaStore) -> None:
    assert (await store.acquire("tokens:acme", LIMITS, 2)).admitted
    refused = await store.acquire("tokens:acme", LIMITS, 2)
    assert not refused.admitted and [w.fits for w in refused.windows] == [False, True]
    assert await used(store, "tokens:acme") == [2, 2]
    assert (await store.acquire("tokens:globex", LIMITS, 3)).admitted  # scopes are counted apart


async def test_windows_follow_the_redis_clock(store: RedisQuotaStore, inspect: Redis) -> None:
    before = await server_now(inspect)
    admission = await store.acquire("requests:acme", LIMITS)
    after = await server_now(inspect)
    for state, seconds in zip(admission.windows, (HOUR, DAY), strict=True):
        assert state.index in {int(before // seconds), int(after // seconds)}
        assert (state.index + 1) * seconds - after - 0.002 <= state.reset_s <= (state.index + 1) * seconds - before


async def test_layout_is_one_hash_per_scope_and_window_expiring_after_its_window(
    store: RedisQuotaStore, inspect: Redis
) -> None:
    admission = await store.acquire("requests:acme", LIMITS, 2)
    keys = sorted(await inspect.keys("*"))
    assert keys == ["tokenlabs:{requests:acme}:3600", "tokenlabs:{requests:acme}:86400"]
    for state in admission.windows:
        key = counter_key("requests:acme", state.limit.seconds)
        assert await inspect.type(key) == "hash"
        assert await inspect.hgetall(key) == {"i": str(state.index), "n": "2"}
        window_end_ms = (state.index + 1) * state.limit.seconds * 1000
        assert await inspect.pexpiretime(key) == window_end_ms + EXPIRY_GRACE_MS


async def test_counters_from_another_window_read_as_zero(store: RedisQuotaStore, inspect: Redis) -> None:
    index = (await store.peek("requests:acme", LIMITS))[0].index
    await inspect.hset(counter_key("requests:acme", HOUR), mapping={"i": index - 1, "n": 3})
    admission = await store.acquire("requests:acme", LIMITS)
    assert admission.admitted and [w.used for w in admission.windows] == [1, 1]
    assert await inspect.hget(counter_key("requests:acme", HOUR), "i") == str(index)


async def test_a_window_rolls_over_on_the_server_clock(store: RedisQuotaStore) -> None:
    per_second = (Limit("second", 1, 2),)
    while not (await store.acquire("requests:fast", per_second, 2)).admitted:
        pass  # the second was half used by an earlier attempt: the loop ends in the next one
    refused = await store.acquire("requests:fast", per_second)
    assert not refused.admitted and 0 < refused.retry_after_s <= 1
    await asyncio.sleep(refused.retry_after_s + 0.01)
    admission = await store.acquire("requests:fast", per_second)
    assert admission.admitted and admission.windows[0].used == 1
    assert admission.windows[0].index == refused.windows[0].index + 1


async def test_keys_expire_once_their_window_is_over(store: RedisQuotaStore, inspect: Redis) -> None:
    admission = await store.acquire("requests:brief", (Limit("second", 1, 5),))
    key = counter_key("requests:brief", 1)
    assert await inspect.exists(key)
    deadline = time.monotonic() + admission.windows[0].reset_s + EXPIRY_GRACE_MS / 1000 + 0.5
    while await inspect.exists(key):
        assert time.monotonic() < deadline, "the counter outlived its window and the grace"
        await asyncio.sleep(0.05)


async def test_adjust_applies_only_to_the_window_that_was_acquired_in(store: RedisQuotaStore) -> None:
    admission = await store.acquire("tokens:acme", LIMITS, 2)
    await store.adjust("tokens:acme", admission.windows, 1)
    assert await used(store, "tokens:acme") == [3, 3]
    minute, day = admission.windows
    past_minute = WindowState(minute.limit, minute.index - 1, minute.used, minute.reset_s)
    await store.adjust("tokens:acme", (past_minute, day), -2)
    assert await used(store, "tokens:acme") == [3, 1]
    await store.adjust("tokens:acme", (), -2)
    await store.adjust("tokens:never", admission.windows, 5)  # nothing was counted there: nothing to settle
    assert await used(store, "tokens:never") == [0, 0]


async def test_adjust_many_applies_each_item_as_one_adjust(store: RedisQuotaStore, inspect: Redis) -> None:
    acme = await store.acquire("tokens:acme", LIMITS, 3)
    globex = await store.acquire("tokens:globex", LIMITS, 2)
    hour, day = globex.windows
    past_hour = WindowState(hour.limit, hour.index - 1, hour.used, hour.reset_s)
    await inspect.script_flush()  # the pipeline loads the script it needs
    await store.adjust_many(
        [
            ("tokens:acme", acme.windows, -1),
            ("tokens:globex", (past_hour, day), 2),
            ("tokens:initech", acme.windows, 5),  # nothing was counted there: nothing to settle
            ("tokens:acme", (), 7),
            ("tokens:acme", acme.windows, 0),
        ]
    )
    assert await used(store, "tokens:acme") == [2, 2]
    assert await used(store, "tokens:globex") == [2, 4]
    assert await used(store, "tokens:initech") == [0, 0]
    await store.adjust_many([])


async def test_adjust_never_goes_below_zero_and_may_exceed_the_limit(store: RedisQuotaStore) -> None:
    admission = await store.acquire("tokens:acme", LIMITS, 1)
    await store.adjust("tokens:acme", admission.windows, -10)
    assert await used(store, "tokens:acme") == [0, 0]
    await store.adjust("tokens:acme", admission.windows, 10)
    peeked = await store.peek("tokens:acme", LIMITS)
    assert [w.used for w in peeked] == [10, 10] and [w.remaining for w in peeked] == [0, 0]


async def test_peek_writes_nothing(store: RedisQuotaStore, inspect: Redis) -> None:
    peeked = await store.peek("requests:acme", LIMITS)
    assert [w.used for w in peeked] == [0, 0] and all(0 < w.reset_s <= w.limit.seconds for w in peeked)
    assert await inspect.keys("*") == []
    assert await store.peek("requests:acme", ()) == ()
    assert (await store.acquire("requests:acme", ())).admitted


async def test_scripts_are_loaded_again_after_a_script_flush(store: RedisQuotaStore, inspect: Redis) -> None:
    await store.acquire("requests:acme", LIMITS)
    await inspect.script_flush()
    assert (await store.acquire("requests:acme", LIMITS)).windows[0].used == 2


async def test_a_brace_in_a_scope_is_refused(store: RedisQuotaStore) -> None:
    with pytest.raises(ValueError, match="must not contain"):
        await store.acquire("requests:a}b", LIMITS)


async def test_concurrent_acquires_from_two_replicas_admit_exactly_the_limit(redis_server: RedisServer) -> None:
    limit = (Limit("day", DAY, 137),)
    replicas = [RedisQuotaStore(redis_server.url, 2.0), RedisQuotaStore(redis_server.url, 2.0)]
    try:
        admissions = await asyncio.gather(
            *(replicas[n % 2].acquire("requests:race", limit) for n in range(400)),
        )
        assert sum(admission.admitted for admission in admissions) == 137
        assert sorted(a.windows[0].used for a in admissions if a.admitted) == list(range(1, 138))
        assert await used(replicas[0], "requests:race", limit) == [137]
    finally:
        for replica in replicas:
            await replica.close()


async def test_a_dead_redis_is_an_error_at_once(redis_server: RedisServer) -> None:
    store = RedisQuotaStore(redis_server.url, TIMEOUT_S)
    try:
        admission = await store.acquire("requests:acme", LIMITS)
        redis_server.kill()
        for call in (
            store.acquire("requests:acme", LIMITS),
            store.peek("requests:acme", LIMITS),
            store.adjust_many([("requests:acme", admission.windows, 1)]),
        ):
            started = time.monotonic()
            with pytest.raises(QuotaStoreError, match="ConnectionError"):
                await call
            assert time.monotonic() - started < TIMEOUT_S
    finally:
        await store.close()


async def test_a_hung_redis_is_an_error_after_the_timeout(redis_server: RedisServer) -> None:
    store = RedisQuotaStore(redis_server.url, 0.2)
    try:
        admission = await store.acquire("requests:acme", LIMITS)
        redis_server.pause()
        for call in (
            store.acquire("requests:acme", LIMITS),
            store.adjust("requests:acme", admission.windows, 1),
            store.peek("requests:acme", LIMITS),
        ):
            started = time.monotonic()
            with pytest.raises(QuotaStoreError, match=r"timed out after 0\.2s"):
                await call
            assert 0.15 < time.monotonic() - started < 0.4
        redis_server.resume()
        # The calls that timed out were sent, so Redis may run them once it wakes up: never twice, and the
        # connections they left behind are not reused for new replies.
        assert (await store.peek("requests:acme", LIMITS))[0].used in {1, 2, 3}
        assert (await store.acquire("requests:acme", (Limit("day", DAY, 100),))).admitted
    finally:
        await store.close()


async def test_close_releases_the_connections(redis_server: RedisServer, inspect: Redis) -> None:
    store = RedisQuotaStore(redis_server.url, TIMEOUT_S)
    await asyncio.gather(*(store.acquire("requests:acme", (Limit("day", DAY, 100),)) for _ in range(10)))
    assert len(await inspect.client_list()) > 1
    await store.close()
    deadline = time.monotonic() + 1
    while len(await inspect.client_list()) > 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


async def test_an_acquire_whose_reply_is_lost_is_not_sent_again(redis_server: RedisServer) -> None:
    """The connection breaks after Redis ran the script: a retry would count the same request twice."""

    async def proxy(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", redis_server.port)
        script_sent = asyncio.Event()

        async def upstream() -> None:
            while data := await client_reader.read(65536):
                if b"EVALSHA" in data:
                    script_sent.set()
                server_writer.write(data)
                await server_writer.drain()

        forwarding = asyncio.ensure_future(upstream())
        while data := await server_reader.read(65536):
            if script_sent.is_set():
                break  # drop the script's reply and the connection with it
            client_writer.write(data)
            await client_writer.drain()
        forwarding.cancel()
        client_writer.close()
        server_writer.close()

    direct = RedisQuotaStore(redis_server.url, TIMEOUT_S)
    proxy_server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    proxied = RedisQuotaStore(f"redis://127.0.0.1:{proxy_server.sockets[0].getsockname()[1]}/0", TIMEOUT_S)
    try:
        await direct.acquire("requests:warmup", LIMITS)  # loads the script, so the proxied EVALSHA runs it
        with pytest.raises(QuotaStoreError, match="ConnectionError"):
            await proxied.acquire("requests:acme", LIMITS)
        assert await used(direct, "requests:acme") == [1, 1]
    finally:
        await proxied.close()
        proxy_server.close()
        await direct.close()
