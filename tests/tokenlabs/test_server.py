"""The gRPC scaffold over real loopback gRPC: health gating, reflection, metrics, big messages, drain."""

import asyncio
import random
from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from authz.secrets import Tenant, key_digest
from authz.servicer import SERVICE_NAME, AuthorizationServicer
from authz.snapshot import build_snapshot
from authz.tiers import tier_policies
from epp.metrics.snapshot import MetricsBoard
from epp.picking import EndpointPicker
from epp.pools.directory import PoolDirectory
from epp.scheduling.framework import Scheduler
from epp.scheduling.registry import build_profile
from epp.servicer import SERVICE_NAME as EPP_SERVICE
from epp.servicer import EndpointPickerServicer
from tests.helpers import check_request, repo_settings, request_headers, response_headers
from tokenlabs.devstack import free_ports
from tokenlabs.quota.memory import MemoryQuotaStore
from tokenlabs.server import PluginServer, ServiceBinding
from tokenlabs.server_settings import ServerSettings
from tokenlabs.telemetry import Telemetry


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", "x-tenant-id": "forged"}


SNAPSHOT = build_snapshot([Tenant("acme", "pro", "ns/acme", key_digest("tlabs_sk_acme"))])


@pytest.fixture
async def server() -> AsyncIterator[PluginServer]:
    grpc_port, metrics_port = free_ports(2)
    settings = ServerSettings("127.0.0.1", grpc_port, metrics_port, drain_seconds=2.0)
    telemetry = Telemetry.create("authz")
    binding = ServiceBinding(
        SERVICE_NAME,
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server,
        AuthorizationServicer(
            lambda: SNAPSHOT, tier_policies(repo_settings().tiers), MemoryQuotaStore(), telemetry, 8 * 1024 * 1024
        ),
    )
    async with PluginServer(settings, telemetry, [binding], max_message_bytes=8 * 1024 * 1024) as plugin:
        yield plugin


async def test_health_is_not_serving_until_ready(server: PluginServer) -> None:
    async with grpc.aio.insecure_channel(server.settings.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        await server.mark_ready()
        for service in ("", SERVICE_NAME):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_every_service(server: PluginServer) -> None:
    async with grpc.aio.insecure_channel(server.settings.grpc_address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for reply in stub.ServerReflectionInfo(iter([request])):
            names = {service.name for service in reply.list_services_response.service}
            break
    assert {SERVICE_NAME, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


async def test_check_over_grpc_with_a_multi_mib_body(server: PluginServer) -> None:
    async with grpc.aio.insecure_channel(
        server.settings.grpc_address,
        options=[("grpc.max_send_message_length", 16 * 1024 * 1024)],
    ) as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        allowed = await stub.Check(check_request(bearer("tlabs_sk_acme"), body="x" * (6 * 1024 * 1024)))
        denied = await stub.Check(check_request(bearer("tlabs_sk_nope")))
    assert allowed.status.code == 0
    headers = {option.header.key: option.header.value for option in allowed.ok_response.headers}
    assert headers == {"x-tenant-id": "acme", "x-tenant-tier": "pro"}
    assert {"authorization", "x-api-key", "x-ai-eg-model", "x-gateway-destination-endpoint"} <= set(
        allowed.ok_response.headers_to_remove
    )
    assert allowed.dynamic_metadata.fields["tenant_id"].string_value == "acme"
    assert denied.denied_response.status.code == 401
    assert '"invalid_api_key"' in denied.denied_response.body
    assert "tlabs_sk_nope" not in denied.denied_response.body


async def test_metrics_are_served_over_http(server: PluginServer) -> None:
    async with grpc.aio.insecure_channel(server.settings.grpc_address) as channel:
        await external_auth_pb2_grpc.AuthorizationStub(channel).Check(check_request(bearer("tlabs_sk_acme")))
    url = f"http://127.0.0.1:{server.settings.metrics_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    assert response.status == 200
    assert 'tokenlabs_authz_decisions_total{reason="ok",result="allow"} 1.0' in text
    assert "tokenlabs_decision_duration_seconds_bucket" in text


async def test_drain_refuses_new_work_and_reports_not_serving(server: PluginServer) -> None:
    await server.mark_ready()
    await server.drain()
    async with grpc.aio.insecure_channel(server.settings.grpc_address) as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await asyncio.wait_for(
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=0.5), 2
            )


async def test_drain_lets_an_in_flight_stream_finish() -> None:
    grpc_port, metrics_port = free_ports(2)
    settings = ServerSettings("127.0.0.1", grpc_port, metrics_port, drain_seconds=5.0)
    telemetry = Telemetry.create("epp")
    settings_ = repo_settings()
    scheduler = Scheduler(build_profile({}), fallbacks=2, rng=random.Random(1))
    endpoint_picker = EndpointPicker(PoolDirectory.from_settings(settings_), MetricsBoard(), scheduler, settings_.epp)
    picker = EndpointPickerServicer(endpoint_picker, telemetry)
    binding = ServiceBinding(EPP_SERVICE, external_processor_pb2_grpc.add_ExternalProcessorServicer_to_server, picker)
    async with (
        PluginServer(settings, telemetry, [binding], max_message_bytes=1024 * 1024) as server,
        grpc.aio.insecure_channel(settings.grpc_address) as channel,
    ):
        await server.mark_ready()
        call = external_processor_pb2_grpc.ExternalProcessorStub(channel).Process()
        await call.write(request_headers({"x-ai-eg-model": "meta-llama/Llama-3.1-8B-Instruct"}))
        assert (await call.read()).HasField("request_headers")
        draining = asyncio.create_task(server.drain())
        await asyncio.sleep(0.2)
        assert not draining.done()  # held open by the stream in flight
        await call.write(response_headers({":status": "200"}))
        assert (await call.read()).HasField("response_headers")
        await call.done_writing()
        await asyncio.wait_for(draining, 5.0)
