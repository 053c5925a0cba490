"""PoolDirectory built from settings with the Kubernetes pod source: selector pools follow their pods through the
fake API (via a kubeconfig, as ``epp`` finds it), static pools keep their list, no cluster is needed without
selector pools."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from epp.pools.directory import PoolDirectory
from epp.pools.kubernetes import KubernetesPodEndpoints, Members, pod_source_factory
from epp.pools.static import StaticEndpoints
from tests.helpers import metric_samples
from tests.kube_api import KubeApi
from tokenlabs.errors import ConfigError
from tokenlabs.kube.reflector import WatchOptions
from tokenlabs.settings import Settings, parse
from tokenlabs.telemetry import Telemetry

FAST = WatchOptions(backoff_initial_s=0.01, backoff_max_s=0.05, coalesce_s=0.01)
STATIC = {"endpoints": ["10.9.0.1:8000", "10.9.0.2:8000"]}


def settings(**pools: dict[str, Any]) -> Settings:
    document = {
        "tiers": {"free": {}},
        "models": {f"model-{name}": {"pool": name} for name in pools},
        "pools": pools,
    }
    return parse(document, Path("."))


def selector(**labels: str) -> dict[str, Any]:
    return {"selector": labels, "target_port": 8000}


@pytest.fixture(autouse=True)
def no_threads_left() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 2
    while any(t.name.startswith("pool-") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("pool-")]


async def test_static_pools_need_no_cluster(tmp_path: Path) -> None:
    telemetry = Telemetry.create("epp")
    factory = pod_source_factory(telemetry, str(tmp_path / "no-kubeconfig"))
    pools = PoolDirectory.from_settings(settings(static=STATIC), factory)
    await pools.start()
    pool = pools.for_model("model-static")
    assert pool is not None and isinstance(pool.source, StaticEndpoints)
    assert pool.endpoints == ("10.9.0.1:8000", "10.9.0.2:8000")
    await pools.stop()
    assert "tokenlabs_epp_pool_watch_restarts" not in telemetry.render().decode()


def test_a_selector_pool_without_a_cluster_names_its_key(tmp_path: Path) -> None:
    factory = pod_source_factory(Telemetry.create("epp"), str(tmp_path / "no-kubeconfig"))
    with pytest.raises(ConfigError, match=r"'pools\.chat\.selector'.*no usable cluster configuration"):
        PoolDirectory.from_settings(settings(chat=selector(app="vllm")), factory)


async def test_selector_pools_follow_their_pods_beside_static_ones(kube_api: KubeApi, tmp_path: Path) -> None:
    kubeconfig = str(kube_api.write_kubeconfig(tmp_path / "kubeconfig"))
    kube_api.apply_pod("chat-0", "10.0.0.1", labels={"app": "chat"})
    kube_api.apply_pod("code-0", "10.0.1.1", labels={"app": "code"})
    changes: list[tuple[str, Members]] = []
    factory = pod_source_factory(Telemetry.create("epp"), kubeconfig, lambda *change: changes.append(change))
    config = settings(chat=selector(app="chat"), code=selector(app="code"), static=STATIC)
    pools = PoolDirectory.from_settings(config, factory)
    assert isinstance(pools.pools["chat"].source, KubernetesPodEndpoints)
    await pools.start()
    try:
        assert pools.pools["chat"].endpoints == ("10.0.0.1:8000",)
        assert pools.pools["code"].endpoints == ("10.0.1.1:8000",)
        assert pools.pools["static"].endpoints == ("10.9.0.1:8000", "10.9.0.2:8000")
        kube_api.apply_pod("chat-1", "10.0.0.2", labels={"app": "chat"})
        deadline = time.monotonic() + 2
        while (chat := pools.for_model("model-chat")) is None or len(chat.endpoints) < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert chat.endpoints == ("10.0.0.1:8000", "10.0.0.2:8000")
        assert pools.pools["code"].endpoints == ("10.0.1.1:8000",)
        assert sorted(changes) == [
            ("chat", ("10.0.0.1:8000",)),
            ("chat", ("10.0.0.1:8000", "10.0.0.2:8000")),
            ("code", ("10.0.1.1:8000",)),
        ]
    finally:
        await pools.stop()


async def test_every_pool_counts_its_own_restarts(kube_api: KubeApi, tmp_path: Path) -> None:
    kubeconfig = str(kube_api.write_kubeconfig(tmp_path / "kubeconfig"))
    kube_api.stop()
    telemetry = Telemetry.create("epp")
    factory = pod_source_factory(telemetry, kubeconfig, options=FAST)
    pools = PoolDirectory.from_settings(settings(chat=selector(app="chat"), code=selector(app="code")), factory)
    starting = asyncio.create_task(pools.start())
    await asyncio.sleep(0.2)
    assert not starting.done()
    kube_api.start()
    await asyncio.wait_for(starting, 3)
    await pools.stop()
    samples = metric_samples(telemetry.render().decode())
    for pool in ("chat", "code"):
        labels = frozenset({("pool", pool), ("reason", "error")})
        assert samples[("tokenlabs_epp_pool_watch_restarts_total", labels)] >= 1
