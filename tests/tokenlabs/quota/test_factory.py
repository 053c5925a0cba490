from collections.abc import Iterator

import pytest

from tests.redis_server import RedisServer
from tokenlabs.quota.factory import open_quota_store
from tokenlabs.quota.failover import FailoverQuotaStore
from tokenlabs.quota.memory import MemoryQuotaStore
from tokenlabs.quota.store import QuotaStoreError
from tokenlabs.quota.windows import DAY, Limit
from tokenlabs.settings import QuotaStoreSettings
from tokenlabs.telemetry import Telemetry

LIMITS = (Limit("day", DAY, 1),)


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    telemetry = Telemetry.create("quota-factory-test")
    yield telemetry
    telemetry.shutdown()


async def test_memory_url_counts_in_this_process(telemetry: Telemetry) -> None:
    store = open_quota_store(QuotaStoreSettings("memory://", "closed", 0.25), telemetry)
    assert isinstance(store, MemoryQuotaStore)
    assert (await store.acquire("requests:acme", LIMITS)).admitted
    assert not (await store.acquire("requests:acme", LIMITS)).admitted
    await store.close()


async def test_redis_url_counts_in_redis_behind_the_failure_mode(
    redis_server: RedisServer, telemetry: Telemetry
) -> None:
    store = open_quota_store(QuotaStoreSettings(redis_server.url, "closed", 0.25), telemetry)
    assert isinstance(store, FailoverQuotaStore)
    try:
        assert (await store.acquire("requests:acme", LIMITS)).admitted
        redis_server.kill()
        with pytest.raises(QuotaStoreError):
            await store.acquire("requests:acme", LIMITS)
    finally:
        await store.close()


async def test_nothing_connects_before_the_first_call(telemetry: Telemetry) -> None:
    store = open_quota_store(QuotaStoreSettings("redis://127.0.0.1:1/0", "open", 0.25), telemetry)
    assert (await store.acquire("requests:acme", LIMITS)).admitted  # port 1 refuses: counted locally
    await store.close()
