"""``tokenlabs serve authz`` with the Kubernetes source, against the fake API over HTTP via a kubeconfig:
NOT_SERVING until the first list is in, keys live on apply and dead on delete, SIGTERM while the API is down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from grpc_health.v1 import health_pb2

from tests.helpers import check_request
from tests.kube_api import KubeApi
from tests.server_process import ServerProcess


@pytest.fixture
def authz(tmp_path: Path, kube_api: KubeApi) -> Iterator[ServerProcess]:
    config = tmp_path / "tokenlabs.yaml"
    document = yaml.safe_load((Path(__file__).parents[2] / "tokenlabs.yaml").read_text())
    document["tenants"] = {"source": "kubernetes", "namespace": "kuadrant-system"}
    document["log_level"] = "warning"
    config.write_text(yaml.safe_dump(document))
    kubeconfig = kube_api.write_kubeconfig(tmp_path / "kubeconfig")
    kube_api.stop()  # the API is down when the server starts
    server = ServerProcess("authz", config, tmp_path / "authz.log", env={"KUBECONFIG": str(kubeconfig)})
    try:
        yield server
    finally:
        server.stop()


async def status_of(server: ServerProcess, key: str) -> int:
    async with grpc.aio.insecure_channel(server.address) as channel:
        reply = await authz_grpc.AuthorizationStub(channel).Check(
            check_request({"authorization": f"Bearer {key}"}), timeout=2
        )
    return reply.denied_response.status.code if reply.HasField("denied_response") else 200


async def eventually(server: ServerProcess, key: str, status: int, within_s: float = 1.0) -> None:
    deadline = time.monotonic() + within_s
    while (got := await status_of(server, key)) != status:
        assert time.monotonic() < deadline, f"{key}: still {got}, wanted {status} within {within_s} s"
        await asyncio.sleep(0.02)


async def test_serving_only_after_the_first_list_then_keys_follow_the_watch(
    authz: ServerProcess, kube_api: KubeApi
) -> None:
    await asyncio.sleep(1.5)
    assert authz.process.poll() is None
    assert await authz.health() in (None, health_pb2.HealthCheckResponse.NOT_SERVING)
    kube_api.apply_secret("tenant-acme", "tlabs_sk_acme_one", tier="pro", tenant_id="acme")
    kube_api.start()
    await authz.wait_serving()
    assert await status_of(authz, "tlabs_sk_acme_one") == 200
    kube_api.apply_secret("tenant-beta", "tlabs_sk_beta", tier="free")
    await eventually(authz, "tlabs_sk_beta", 200)
    kube_api.apply_secret("tenant-acme", "tlabs_sk_acme_two", tier="pro", tenant_id="acme")  # rotated
    await eventually(authz, "tlabs_sk_acme_two", 200)
    assert await status_of(authz, "tlabs_sk_acme_one") == 401
    kube_api.apply_secret("tenant-gamma", "tlabs_sk_gamma", tier="gold")
    await eventually(authz, "tlabs_sk_gamma", 403)
    kube_api.delete_secret("tenant-beta")
    await eventually(authz, "tlabs_sk_beta", 401)


async def test_sigterm_while_the_api_is_unreachable_exits_promptly(authz: ServerProcess) -> None:
    deadline = time.monotonic() + 20
    while await authz.health() != health_pb2.HealthCheckResponse.NOT_SERVING:  # up, signals handled, still listing
        assert time.monotonic() < deadline, authz.log.read_text()
        await asyncio.sleep(0.1)
    started = time.monotonic()
    assert authz.stop() == 0
    assert time.monotonic() - started < 5
