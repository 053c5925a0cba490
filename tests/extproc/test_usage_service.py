"""``tokenlabs.v1.UsageService`` over real loopback gRPC: the ledger, the windows read from a memory store filled
by acquire calls (on a fixed clock, so resets are exact), NOT_FOUND, and UNAVAILABLE when the store fails."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import pytest

from extproc.metering import Metering
from extproc.usage import Usage
from extproc.usage_service import SERVICE_NAME, UsageServicer, usage_binding
from tokenlabs.devstack import free_ports
from tokenlabs.quota.memory import MemoryQuotaStore
from tokenlabs.quota.scopes import requests_scope, tokens_scope
from tokenlabs.quota.store import QuotaStore, QuotaStoreError
from tokenlabs.quota.tier_limits import request_limits, token_limits
from tokenlabs.quota.windows import DAY, MINUTE, Admission, Limit, WindowState
from tokenlabs.server import PluginServer, ServiceBinding
from tokenlabs.server_settings import ServerSettings
from tokenlabs.settings import ModelSettings, TierSettings
from tokenlabs.telemetry import Telemetry
from tokenlabs.v1 import usage_pb2, usage_pb2_grpc

NOW = 1_699_999_995.25  # 15.25 s into a minute
MINUTE_END = (NOW // MINUTE + 1) * MINUTE
DAY_END = (NOW // DAY + 1) * DAY
TIERS = {
    "pro": TierSettings("pro", 100, 5000, 50_000, 500_000, models=("*",)),
    "metered": TierSettings("metered", None, None, None, 1000, models=("*",)),  # tokens per day only
    "unlimited": TierSettings("unlimited", None, None, None, None, models=("*",)),
}
LLAMA = ModelSettings("llama", "pool", input_usd_per_1m_tokens=0.10, output_usd_per_1m_tokens=0.20)
VL = ModelSettings("vl", "pool", input_usd_per_1m_tokens=0.20, output_usd_per_1m_tokens=0.60)


class FailingStore:
    """A store whose every call fails, as a Redis that does not answer does behind a closed failure mode."""

    async def acquire(self, scope: str, limits: Sequence[Limit], amount: int = 1) -> Admission:
        raise QuotaStoreError("redis acquire timed out after 0.25s")

    async def adjust(self, scope: str, windows: Sequence[WindowState], delta: int) -> None:
        raise QuotaStoreError("redis adjust timed out after 0.25s")

    async def peek(self, scope: str, limits: Sequence[Limit]) -> tuple[WindowState, ...]:
        raise QuotaStoreError("redis peek timed out after 0.25s")

    async def close(self) -> None:
        pass


def stub_of(channel: grpc.aio.Channel) -> Any:
    return usage_pb2_grpc.UsageServiceStub(channel)  # type: ignore[no-untyped-call]  # generated, unannotated


@contextlib.asynccontextmanager
async def serving(binding: ServiceBinding) -> AsyncIterator[Any]:
    grpc_port, metrics_port = free_ports(2)
    settings = ServerSettings("127.0.0.1", grpc_port, metrics_port, drain_seconds=0.5)
    async with (
        PluginServer(settings, Telemetry.create("usage-test"), [binding], max_message_bytes=1024 * 1024),
        grpc.aio.insecure_channel(settings.grpc_address) as channel,
    ):
        yield stub_of(channel)


def binding_of(servicer: UsageServicer) -> ServiceBinding:
    return ServiceBinding(SERVICE_NAME, usage_pb2_grpc.add_UsageServiceServicer_to_server, servicer)


@pytest.fixture
def metering() -> Metering:
    metering = Metering(Telemetry.create("usage-test"))
    metering.record("acme", LLAMA, 200, Usage(10, 4, 14), tier="pro")
    metering.record("acme", VL, 200, Usage(100, 20, 120), tier="pro")
    metering.record("acme", LLAMA, 503, None, tier="pro")
    metering.record("initech", LLAMA, 200, Usage(200, 100, 300), tier="metered")
    metering.record("globex", LLAMA, 200, Usage(1, 1, 2), tier="unlimited")
    metering.record("hooli", LLAMA, 200, Usage(1, 1, 2), tier="retired")  # no longer in the config
    return metering


@pytest.fixture
async def store() -> MemoryQuotaStore:
    store = MemoryQuotaStore(clock=lambda: NOW)
    for _ in range(3):
        await store.acquire(requests_scope("acme"), request_limits(TIERS["pro"]))
    await store.acquire(tokens_scope("acme"), token_limits(TIERS["pro"]), 134)
    await store.acquire(tokens_scope("initech"), token_limits(TIERS["metered"]), 300)
    return store


@pytest.fixture
async def stub(metering: Metering, store: MemoryQuotaStore) -> AsyncIterator[Any]:
    async with serving(binding_of(UsageServicer(metering, store, TIERS, clock=lambda: NOW))) as stub:
        yield stub


async def get(stub: Any, tenant: str) -> usage_pb2.TenantUsage:
    response = await stub.GetTenantUsage(usage_pb2.GetTenantUsageRequest(tenant_id=tenant))
    usage: usage_pb2.TenantUsage = response.usage
    return usage


async def test_get_reports_totals_models_and_both_windows(stub: Any) -> None:
    usage = await get(stub, "acme")
    assert (usage.tenant_id, usage.tier) == ("acme", "pro")
    assert (usage.requests, usage.prompt_tokens, usage.completion_tokens) == (3, 110, 24)
    assert usage.cost_usd == pytest.approx((10 * 0.10 + 4 * 0.20 + 100 * 0.20 + 20 * 0.60) / 1e6)
    assert [(m.model, m.requests, m.prompt_tokens, m.completion_tokens) for m in usage.models] == [
        ("llama", 2, 10, 4),
        ("vl", 1, 100, 20),
    ]
    minute, day = usage.windows
    assert minute == usage_pb2.WindowUsage(
        window=usage_pb2.WINDOW_MINUTE,
        requests=3,
        request_limit=100,
        requests_remaining=97,
        tokens=134,
        token_limit=50_000,
        tokens_remaining=49_866,
        resets_at={"seconds": int(MINUTE_END)},
    )
    assert (day.window, day.requests, day.request_limit, day.requests_remaining) == (
        usage_pb2.WINDOW_DAY,
        3,
        5000,
        4997,
    )
    assert (day.tokens, day.token_limit, day.tokens_remaining) == (134, 500_000, 499_866)
    assert day.resets_at.seconds == DAY_END


async def test_an_absent_limit_is_unset_and_counts_nothing(stub: Any) -> None:
    (day,) = (await get(stub, "initech")).windows  # the tier limits nothing per minute
    assert day.window == usage_pb2.WINDOW_DAY
    assert not day.HasField("request_limit") and day.requests == day.requests_remaining == 0
    assert (day.tokens, day.token_limit, day.tokens_remaining) == (300, 1000, 700)
    assert day.resets_at.seconds == DAY_END


async def test_no_windows_without_limits_or_for_a_tier_the_config_does_not_know(stub: Any) -> None:
    assert not (await get(stub, "globex")).windows
    hooli = await get(stub, "hooli")
    assert hooli.tier == "retired" and hooli.requests == 1 and not hooli.windows


async def test_remaining_never_goes_below_zero(metering: Metering, store: MemoryQuotaStore) -> None:
    scope = tokens_scope("acme")
    held = await store.acquire(scope, token_limits(TIERS["pro"]), 1)
    await store.adjust(scope, held.windows, 60_000)  # a charge bigger than the reservation, over the minute limit
    async with serving(binding_of(UsageServicer(metering, store, TIERS, clock=lambda: NOW))) as stub:
        minute, day = (await get(stub, "acme")).windows
    assert (minute.tokens, minute.tokens_remaining) == (60_135, 0)
    assert (day.tokens, day.tokens_remaining) == (60_135, 439_865)


async def test_list_has_every_tenant_served_sorted_by_id(stub: Any) -> None:
    listing = await stub.ListTenantUsage(usage_pb2.ListTenantUsageRequest())
    assert [usage.tenant_id for usage in listing.tenants] == ["acme", "globex", "hooli", "initech"]
    assert listing.tenants[0] == await get(stub, "acme")


async def test_list_reads_many_tenants_in_order(store: MemoryQuotaStore) -> None:
    metering = Metering(Telemetry.create("usage-test"))
    for n in range(50):
        tenant = f"t{n:02}"
        for _ in range(n):
            await store.acquire(requests_scope(tenant), request_limits(TIERS["pro"]))
        metering.record(tenant, LLAMA, 200, None, tier="pro")
    async with serving(binding_of(UsageServicer(metering, store, TIERS, clock=lambda: NOW))) as stub:
        listing = await stub.ListTenantUsage(usage_pb2.ListTenantUsageRequest())
    assert [(usage.tenant_id, usage.windows[0].requests) for usage in listing.tenants] == [
        (f"t{n:02}", n) for n in range(50)
    ]


async def test_unknown_and_empty_tenants_are_refused(stub: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await get(stub, "ghost")
    assert refused.value.code() is grpc.StatusCode.NOT_FOUND
    assert "'ghost'" in refused.value.details() and "since it started" in refused.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await get(stub, "")
    assert empty.value.code() is grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("tenants", [1, 40])
async def test_a_failing_store_is_unavailable(tenants: int) -> None:
    metering = Metering(Telemetry.create("usage-test"))
    for n in range(tenants):
        metering.record(f"t{n}", LLAMA, 200, None, tier="pro")
    failing: QuotaStore = FailingStore()
    async with serving(binding_of(UsageServicer(metering, failing, TIERS))) as stub:
        for call in (get(stub, "t0"), stub.ListTenantUsage(usage_pb2.ListTenantUsageRequest())):
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await call
            assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
            assert failed.value.details() == "the quota store could not be read: redis peek timed out after 0.25s"
        # A tenant without limits needs no read, so the store's state does not matter for it.
        metering.record("free-for-all", LLAMA, 200, None, tier="unlimited")
        assert (await get(stub, "free-for-all")).requests == 1


async def test_usage_binding_serves_the_usage_service(metering: Metering, store: MemoryQuotaStore) -> None:
    binding = usage_binding(metering, store, TIERS)
    assert binding.name == "tokenlabs.v1.UsageService"
    async with serving(binding) as stub:
        assert (await get(stub, "acme")).requests == 3
