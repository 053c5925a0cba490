"""The Check service over real loopback gRPC: identity headers, rate-limit headers counting down, 429, 503."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from types import MappingProxyType

import grpc
import orjson
import pytest
from envoy.service.auth.v3 import external_auth_pb2 as authz_pb2
from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from google.rpc import code_pb2

from authz.secrets import Tenant, key_digest
from authz.servicer import SERVICE_NAME, AuthorizationServicer
from authz.snapshot import build_snapshot
from authz.tiers import TierPolicy
from tests.helpers import check_request, response_header_values
from tokenlabs.devstack import free_ports
from tokenlabs.quota.memory import MemoryQuotaStore
from tokenlabs.quota.store import QuotaStoreError
from tokenlabs.quota.windows import Admission, Limit, WindowState
from tokenlabs.server import PluginServer, ServiceBinding
from tokenlabs.server_settings import ServerSettings
from tokenlabs.telemetry import Telemetry

SNAPSHOT = build_snapshot(
    [
        Tenant("acme", "small", "ns/acme", key_digest("tlabs_sk_acme")),
        Tenant("acme", "small", "ns/acme-2", key_digest("tlabs_sk_acme_second")),
        Tenant("open", "unlimited", "ns/open", key_digest("tlabs_sk_open")),
    ]
)
POLICIES = MappingProxyType(
    {
        "small": TierPolicy("small", (Limit("minute", 60, 3), Limit("day", 86_400, 1000)), None),
        "unlimited": TierPolicy("unlimited", (), None),
    }
)


class DeadStore:
    async def acquire(self, scope: str, limits: Sequence[Limit], amount: int = 1) -> Admission:
        raise QuotaStoreError("connection refused")

    async def adjust(self, scope: str, windows: Sequence[WindowState], delta: int) -> None:
        raise QuotaStoreError("connection refused")

    async def peek(self, scope: str, limits: Sequence[Limit]) -> tuple[WindowState, ...]:
        raise QuotaStoreError("connection refused")

    async def close(self) -> None:
        pass


async def serve(store: object, telemetry: Telemetry) -> AsyncIterator[authz_grpc.AuthorizationStub]:
    grpc_port, metrics_port = free_ports(2)
    servicer = AuthorizationServicer(lambda: SNAPSHOT, POLICIES, store, telemetry, 1 << 20)  # type: ignore[arg-type]
    binding = ServiceBinding(SERVICE_NAME, authz_grpc.add_AuthorizationServicer_to_server, servicer)
    settings = ServerSettings("127.0.0.1", grpc_port, metrics_port, drain_seconds=1.0)
    async with (
        PluginServer(settings, telemetry, [binding], 1 << 20),
        grpc.aio.insecure_channel(settings.grpc_address) as channel,
    ):
        yield authz_grpc.AuthorizationStub(channel)


@pytest.fixture
async def telemetry() -> Telemetry:
    return Telemetry.create("authz")


@pytest.fixture
async def stub(telemetry: Telemetry) -> AsyncIterator[authz_grpc.AuthorizationStub]:
    async for client in serve(MemoryQuotaStore(), telemetry):
        yield client


def bearer(key: str, **extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", **extra}


async def test_allowed_checks_count_down_and_the_fourth_is_429(stub: authz_grpc.AuthorizationStub) -> None:
    remaining = []
    for _ in range(3):
        response = await stub.Check(check_request(bearer("tlabs_sk_acme")))
        assert response.status.code == code_pb2.OK
        headers = response_header_values(response)
        assert headers["x-ratelimit-limit-requests"] == "3"
        remaining.append(int(headers["x-ratelimit-remaining-requests"]))
        assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert remaining == [2, 1, 0]
    # The same tenant through its second key shares the tenant's counters.
    refused = await stub.Check(check_request(bearer("tlabs_sk_acme_second")))
    assert refused.status.code == code_pb2.RESOURCE_EXHAUSTED
    assert refused.denied_response.status.code == 429
    headers = response_header_values(refused)
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["x-ratelimit-remaining-requests"] == "0"
    error = orjson.loads(refused.denied_response.body)["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"


async def test_identity_goes_upstream_and_credentials_do_not(stub: authz_grpc.AuthorizationStub) -> None:
    response = await stub.Check(
        check_request(bearer("tlabs_sk_open", **{"x-tenant-id": "forged", "x-api-key": "tlabs_sk_open"}))
    )
    ok = response.ok_response
    assert {h.header.key: h.header.value for h in ok.headers} == {"x-tenant-id": "open", "x-tenant-tier": "unlimited"}
    assert {"authorization", "x-api-key", "x-ai-eg-model", "x-gateway-destination-endpoint"} <= set(
        ok.headers_to_remove
    )
    assert dict(response.dynamic_metadata) == {"tenant_id": "open", "tier": "unlimited"}
    assert not response_header_values(response)  # a tier without limits states none


@pytest.mark.parametrize(("headers", "status"), [({}, 401), (bearer("tlabs_sk_wrong"), 401)])
async def test_unknown_callers_are_401_and_not_counted(
    stub: authz_grpc.AuthorizationStub, headers: dict[str, str], status: int
) -> None:
    response = await stub.Check(check_request(headers))
    assert response.denied_response.status.code == status
    assert orjson.loads(response.denied_response.body)["error"]["code"] == "invalid_api_key"


async def test_a_dead_store_in_fail_closed_mode_is_503(telemetry: Telemetry) -> None:
    async for client in serve(DeadStore(), telemetry):
        response = await client.Check(check_request(bearer("tlabs_sk_acme")))
        assert response.denied_response.status.code == 503
        assert orjson.loads(response.denied_response.body)["error"]["code"] == "authorization_unavailable"
        # A tier without limits never touches the store.
        assert (await client.Check(check_request(bearer("tlabs_sk_open")))).status.code == code_pb2.OK
        text = telemetry.render().decode()
    assert 'tokenlabs_authz_decisions_total{reason="store_unavailable",result="deny"} 1.0' in text


async def test_decisions_and_latency_are_metered(stub: authz_grpc.AuthorizationStub, telemetry: Telemetry) -> None:
    await stub.Check(check_request(bearer("tlabs_sk_open")))
    await stub.Check(check_request({}))
    text = telemetry.render().decode()
    assert 'tokenlabs_authz_decisions_total{reason="ok",result="allow"} 1.0' in text
    assert 'tokenlabs_authz_decisions_total{reason="missing_key",result="deny"} 1.0' in text
    assert 'tokenlabs_decision_duration_seconds_count{phase="check",result="allow",server="authz"} 1.0' in text


async def test_garbage_in_the_request_is_a_clean_answer(stub: authz_grpc.AuthorizationStub) -> None:
    weird = authz_pb2.CheckRequest()  # no attributes at all
    response = await stub.Check(weird)
    assert response.denied_response.status.code == 401
