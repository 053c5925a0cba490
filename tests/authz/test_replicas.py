"""Two authz server processes sharing one real Redis: exact limits under concurrency, and Redis faults.

Each replica is ``tokenlabs serve authz`` in its own process with its own connection pool; clients hit both at once
over real gRPC. Limitador-style races (read, compare, write in separate steps) or LiteLLM-style per-replica limits
would admit more than the limit here.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc

from tests.helpers import check_request
from tests.redis_server import RedisServer
from tests.server_process import ServerProcess

KEY = "tlabs_sk_replica_test"
LIMIT = 50


def write_config(workdir: Path, redis_url: str, failure_mode: str) -> Path:
    tenants = workdir / "tenants"
    tenants.mkdir()
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "tenant-replica",
            "namespace": "kuadrant-system",
            "annotations": {"kuadrant.io/groups": "small", "secret.kuadrant.io/user-id": "replica"},
        },
        "stringData": {"api_key": KEY},
    }
    (tenants / "tenant-replica.yaml").write_text(yaml.safe_dump(secret))
    document = {
        "tiers": {"small": {"requests_per_minute": LIMIT, "requests_per_day": 10 * LIMIT}},
        "tenants": {"source": "directory", "directory": str(tenants)},
        "models": {"m": {"pool": "p"}},
        "pools": {"p": {"endpoints": ["127.0.0.1:1"]}},
        "quota_store": redis_url,
        "quota_store_failure_mode": failure_mode,
        "quota_store_timeout_ms": 200,
        "authz": {"drain_seconds": 1},
        "log_level": "warning",
    }
    path = workdir / "tokenlabs.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


async def status_codes(addresses: list[str], count: int) -> Counter[int]:
    """``count`` checks at once, spread over the replicas; the HTTP status each got (200 when allowed)."""
    channels = [grpc.aio.insecure_channel(address) for address in addresses]
    try:
        stubs = [authz_grpc.AuthorizationStub(channel) for channel in channels]
        request = check_request({"authorization": f"Bearer {KEY}"})
        replies = await asyncio.gather(*(stubs[i % len(stubs)].Check(request, timeout=5) for i in range(count)))
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))
    return Counter(reply.denied_response.status.code if reply.HasField("denied_response") else 200 for reply in replies)


@pytest.fixture
def replicas_factory() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for replica in started:
        replica.stop()


async def start_replicas(
    started: list[ServerProcess], tmp_path: Path, redis_server: RedisServer, failure_mode: str
) -> list[str]:
    config = write_config(tmp_path, redis_server.url, failure_mode)
    started.extend(ServerProcess("authz", config, tmp_path / f"replica-{index}.log") for index in range(2))
    for replica in started:
        await replica.wait_serving()
    return [replica.address for replica in started]


async def test_two_replicas_never_admit_more_than_the_limit(
    replicas_factory: list[ServerProcess], tmp_path: Path, redis_server: RedisServer
) -> None:
    addresses = await start_replicas(replicas_factory, tmp_path, redis_server, "closed")
    codes = await status_codes(addresses, 4 * LIMIT)
    assert codes == Counter({200: LIMIT, 429: 3 * LIMIT})


async def test_fail_closed_refuses_with_503_while_redis_is_down_and_recovers(
    replicas_factory: list[ServerProcess], tmp_path: Path, redis_server: RedisServer
) -> None:
    addresses = await start_replicas(replicas_factory, tmp_path, redis_server, "closed")
    assert await status_codes(addresses, 4) == Counter({200: 4})
    redis_server.kill()
    started = time.monotonic()
    assert await status_codes(addresses, 20) == Counter({503: 20})
    assert time.monotonic() - started < 2  # one timeout per replica, then the breaker answers at once
    redis_server.start()  # comes back empty, like a lost Redis pod
    deadline = time.monotonic() + 15
    while (codes := await status_codes(addresses, 2)) != Counter({200: 2}):
        assert time.monotonic() < deadline, f"no recovery: {codes}"
        await asyncio.sleep(0.2)


async def test_fail_open_counts_locally_while_redis_is_down(
    replicas_factory: list[ServerProcess], tmp_path: Path, redis_server: RedisServer
) -> None:
    addresses = await start_replicas(replicas_factory, tmp_path, redis_server, "open")
    redis_server.kill()
    # Each replica now counts alone: the overshoot is bounded by replicas x limit, never unbounded.
    codes = await status_codes(addresses, 4 * LIMIT)
    assert codes == Counter({200: 2 * LIMIT, 429: 2 * LIMIT})
