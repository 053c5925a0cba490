"""``tokenlabs usage`` end to end through ``tokenlabs.cli.main`` against a UsageService served in this process.

The CLI runs its own event loop, so it runs in a worker thread while the server answers on the test's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from extproc.metering import Metering
from extproc.usage import Usage
from extproc.usage_service import SERVICE_NAME, UsageServicer, usage_binding
from tokenlabs.cli import main
from tokenlabs.cli.usage import HEADER, table
from tokenlabs.devstack import free_ports
from tokenlabs.quota.memory import MemoryQuotaStore
from tokenlabs.quota.scopes import requests_scope, tokens_scope
from tokenlabs.quota.store import QuotaStore, QuotaStoreError
from tokenlabs.quota.tier_limits import request_limits, token_limits
from tokenlabs.quota.windows import Admission, Limit, WindowState
from tokenlabs.server import PluginServer, ServiceBinding
from tokenlabs.server_settings import ServerSettings
from tokenlabs.settings import ModelSettings, TierSettings
from tokenlabs.telemetry import Telemetry
from tokenlabs.v1 import usage_pb2, usage_pb2_grpc

TIERS = {
    "pro": TierSettings("pro", 100, 5000, 50_000, 500_000, models=("*",)),
    "metered": TierSettings("metered", None, None, None, 1000, models=("*",)),
}
LLAMA = ModelSettings("llama", "pool", input_usd_per_1m_tokens=0.10, output_usd_per_1m_tokens=0.20)
NOW = 1_699_999_995.25  # a fixed clock: the counts must not fall into a new minute between filling and reading
Outcome = tuple[int, str, str]


class FailingStore:
    async def acquire(self, scope: str, limits: Sequence[Limit], amount: int = 1) -> Admission:
        raise QuotaStoreError("redis acquire failed: ConnectionError")

    async def adjust(self, scope: str, windows: Sequence[WindowState], delta: int) -> None:
        raise QuotaStoreError("redis adjust failed: ConnectionError")

    async def peek(self, scope: str, limits: Sequence[Limit]) -> tuple[WindowState, ...]:
        raise QuotaStoreError("redis peek failed: ConnectionError")

    async def close(self) -> None:
        pass


@contextlib.asynccontextmanager
async def serving(bindings: Sequence[ServiceBinding]) -> AsyncIterator[str]:
    grpc_port, metrics_port = free_ports(2)
    settings = ServerSettings("127.0.0.1", grpc_port, metrics_port, drain_seconds=0.5)
    async with PluginServer(settings, Telemetry.create("usage-cli-test"), bindings, max_message_bytes=1024 * 1024):
        yield settings.grpc_address


@pytest.fixture(autouse=True)
def no_config_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TOKENLABS_CONFIG", "TOKENLABS_EXTPROC__HOST", "TOKENLABS_EXTPROC__GRPC_PORT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def address() -> AsyncIterator[str]:
    metering = Metering(Telemetry.create("usage-cli-test"))
    metering.record("acme", LLAMA, 200, Usage(10, 4, 14), tier="pro")
    metering.record("acme", LLAMA, 200, Usage(100, 20, 120), tier="pro")
    metering.record("initech", LLAMA, 200, Usage(200, 100, 300), tier="metered")
    store = MemoryQuotaStore(clock=lambda: NOW)
    for _ in range(2):
        await store.acquire(requests_scope("acme"), request_limits(TIERS["pro"]))
    await store.acquire(tokens_scope("acme"), token_limits(TIERS["pro"]), 134)
    await store.acquire(tokens_scope("initech"), token_limits(TIERS["metered"]), 300)
    servicer = UsageServicer(metering, store, TIERS, clock=lambda: NOW)
    async with serving(
        [ServiceBinding(SERVICE_NAME, usage_pb2_grpc.add_UsageServiceServicer_to_server, servicer)]
    ) as address:
        yield address


async def usage(capsys: pytest.CaptureFixture[str], *argv: str) -> Outcome:
    capsys.readouterr()
    status = await asyncio.to_thread(main, ["usage", *argv])
    out, err = capsys.readouterr()
    return status, out, err


async def test_table_lists_every_tenant(address: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = await usage(capsys, "--address", address)
    assert (status, err) == (0, "")
    header, acme, initech = (line.split() for line in out.splitlines())
    assert tuple(header) == HEADER
    # The fixed clock is long past: every window shows as resetting now.
    assert acme == [
        "acme",
        "pro",
        "2",
        "110",
        "24",
        "0.000016",
        "2/100",
        "134/50000",
        "0ms",
        "2/5000",
        "134/500000",
        "0ms",
    ]
    assert initech == ["initech", "metered", "1", "200", "100", "0.000040", "-", "-", "-", "-", "300/1000", "0ms"]


async def test_one_tenant_as_json(address: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = await usage(capsys, "--address", address, "--tenant", "initech", "-o", "json")
    assert status == 0
    tenant = json.loads(out)["usage"]
    assert (tenant["tenantId"], tenant["tier"], tenant["requests"], tenant["promptTokens"]) == (
        "initech",
        "metered",
        "1",
        "200",
    )
    (day,) = tenant["windows"]
    assert day["window"] == "WINDOW_DAY" and "requestLimit" not in day and day["requests"] == "0"
    assert (day["tokens"], day["tokenLimit"], day["tokensRemaining"]) == ("300", "1000", "700")
    assert day["resetsAt"] == "2023-11-15T00:00:00Z"


async def test_the_whole_listing_as_json(address: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = await usage(capsys, "--address", address, "-o", "json")
    assert status == 0
    assert [tenant["tenantId"] for tenant in json.loads(out)["tenants"]] == ["acme", "initech"]


async def test_address_defaults_to_the_configs_extproc(
    address: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host, port = address.rsplit(":", 1)
    config = tmp_path / "tokenlabs.yaml"
    config.write_text(
        "tiers: {pro: {requests_per_minute: 100}}\n"
        "models: {llama: {pool: llama}}\n"
        "pools: {llama: {endpoints: ['127.0.0.1:8101']}}\n"
        f"extproc: {{host: '{host}', grpc_port: {port}}}\n",
        encoding="utf-8",
    )
    status, out, _ = await usage(capsys, "--config", str(config), "--tenant", "acme")
    assert status == 0 and out.splitlines()[1].startswith("acme ")


async def test_unknown_tenant_is_one_line_and_status_1(address: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = await usage(capsys, "--address", address, "--tenant", "ghost")
    assert (status, out) == (1, "")
    assert err == (
        f"tokenlabs usage: extproc at {address}: tenant 'ghost' has not been served by this extproc replica "
        "since it started\n"
    )


async def test_unreachable_server_names_the_address(capsys: pytest.CaptureFixture[str]) -> None:
    (port,) = free_ports(1)
    status, out, err = await usage(capsys, "--address", f"127.0.0.1:{port}")
    assert (status, out) == (1, "")
    assert err.startswith(f"tokenlabs usage: cannot reach extproc at 127.0.0.1:{port}: ") and err.count("\n") == 1


async def test_a_store_failure_is_not_an_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    metering = Metering(Telemetry.create("usage-cli-test"))
    metering.record("acme", LLAMA, 200, None, tier="pro")
    failing: QuotaStore = FailingStore()
    async with serving([usage_binding(metering, failing, TIERS)]) as address:
        status, _, err = await usage(capsys, "--address", address)
    assert status == 1
    assert err == (
        f"tokenlabs usage: extproc at {address}: the quota store could not be read: "
        "redis peek failed: ConnectionError\n"
    )


async def test_no_tenant_served_yet_and_a_server_without_the_service(capsys: pytest.CaptureFixture[str]) -> None:
    empty = usage_binding(Metering(Telemetry.create("usage-cli-test")), MemoryQuotaStore(), TIERS)
    async with serving([empty]) as address:
        assert await usage(capsys, "--address", address) == (
            0,
            "",
            f"tokenlabs usage: extproc at {address} has served no tenant since it started\n",
        )
    async with serving([]) as address:
        status, _, err = await usage(capsys, "--address", address)
    assert status == 1 and "does not serve tokenlabs.v1.UsageService" in err


async def test_config_and_argument_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as missing:
        await usage(capsys, "--config", str(tmp_path / "absent.yaml"))
    assert missing.value.code == 2
    assert "absent.yaml" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad:
        await usage(capsys, "--address", "localhost")
    assert bad.value.code == 2
    assert "'localhost' is not HOST:PORT" in capsys.readouterr().err


def test_table_cells_for_missing_windows_and_limits() -> None:
    minute = usage_pb2.WindowUsage(
        window=usage_pb2.WINDOW_MINUTE, tokens=5, token_limit=10, tokens_remaining=5, resets_at={"seconds": 1060}
    )
    usages = [
        usage_pb2.TenantUsage(tenant_id="a", tier="t", windows=[minute], requests=1, cost_usd=0.5),
        usage_pb2.TenantUsage(tenant_id="bb", requests=12),
    ]
    assert table(usages, now=1000.4).splitlines() == [
        "TENANT  TIER  REQUESTS  PROMPT  COMPLETION  COST_USD  "
        "REQ/MIN  TOK/MIN  RESET/MIN  REQ/DAY  TOK/DAY  RESET/DAY",
        "a       t     1         0       0           0.500000  -        5/10     1m0s       -        -        -",
        "bb      -     12        0       0           0.000000  -        -        -          -        -        -",
    ]
