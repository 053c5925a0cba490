"""KubernetesPodEndpoints against the fake API of ``tests.kube_api`` (real HTTP, the official client), faults
included."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import pytest

from epp.pools.kubernetes import KubernetesPodEndpoints, Members, member, watch_restarts
from tests.helpers import metric_samples
from tests.kube_api import KubeApi, pod
from tokenlabs.kube.reflector import WatchOptions
from tokenlabs.picker_settings import PodSelector
from tokenlabs.telemetry import Telemetry

FAST = WatchOptions(backoff_initial_s=0.01, backoff_max_s=0.05, coalesce_s=0.01)
LABELS = {"app": "vllm", "tier": "a"}
PORT = 8000


def selector(namespace: str = "kuadrant-system") -> PodSelector:
    return PodSelector(namespace, MappingProxyType(LABELS), PORT)


@dataclass
class Harness:
    source: KubernetesPodEndpoints
    telemetry: Telemetry
    changes: list[Members] = field(default_factory=list)

    def restarts(self, reason: str) -> float:
        samples = metric_samples(self.telemetry.render().decode())
        labels = frozenset({("pool", "chat"), ("reason", reason)})
        return samples.get(("tokenlabs_epp_pool_watch_restarts_total", labels), 0.0)


async def until(predicate: Callable[[], bool], timeout_s: float = 2.0) -> float:
    """Seconds until ``predicate()`` holds; fails the test after ``timeout_s``."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout_s, "condition not reached in time"
        await asyncio.sleep(0.005)
    return time.monotonic() - started


def pool_source(kube: KubeApi, telemetry: Telemetry, changes: list[Members], **options: Any) -> KubernetesPodEndpoints:
    api, restarts, timing = kube.core_api(), watch_restarts(telemetry), dataclasses.replace(FAST, **options)
    return KubernetesPodEndpoints(api, "chat", selector(kube.namespace), restarts, changes.append, options=timing)


@contextlib.asynccontextmanager
async def watching(kube: KubeApi, **options: Any) -> AsyncIterator[Harness]:
    telemetry = Telemetry.create("epp")
    changes: list[Members] = []
    harness = Harness(pool_source(kube, telemetry, changes, **options), telemetry, changes)
    await harness.source.start()
    try:
        yield harness
    finally:
        await harness.source.stop()
        telemetry.shutdown()


@pytest.fixture(autouse=True)
def no_threads_left() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 2

    def left() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.startswith("pool-") or t.name == "kube-api"]

    while left() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not left()


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        (pod("a", "10.0.0.1"), "10.0.0.1:8000"),
        (pod("a", "fd00::1"), "[fd00::1]:8000"),
        (pod("a", None), None),
        (pod("a", "10.0.0.1", ready=False), None),
        (pod("a", "10.0.0.1", phase="Pending"), None),
        (pod("a", "10.0.0.1", phase="Succeeded"), None),
        (pod("a", "10.0.0.1") | {"metadata": {"deletionTimestamp": "2030-01-01T00:00:00Z"}}, None),
        (pod("a", "10.0.0.1") | {"status": {"phase": "Running", "podIP": "10.0.0.1"}}, None),
    ],
    ids=["ready", "ipv6", "no-ip", "not-ready", "pending", "succeeded", "terminating", "no-conditions"],
)
def test_member_is_a_running_ready_pod_with_an_ip(manifest: dict[str, Any], expected: str | None) -> None:
    assert member(manifest, PORT) == expected


async def test_start_lists_the_ready_pods_sorted(kube_api: KubeApi) -> None:
    kube_api.apply_pod("b", "10.0.0.2", labels=LABELS)
    kube_api.apply_pod("a", "10.0.0.1", labels=LABELS)
    kube_api.apply_pod("starting", "10.0.0.3", labels=LABELS, ready=False)
    kube_api.apply_pod("scheduled", None, labels=LABELS, phase="Pending")
    async with watching(kube_api) as harness:
        assert harness.source.current == ("10.0.0.1:8000", "10.0.0.2:8000")
        assert harness.changes == [("10.0.0.1:8000", "10.0.0.2:8000")]


async def test_an_empty_pool_starts_and_fills_later(kube_api: KubeApi) -> None:
    async with watching(kube_api) as harness:
        assert harness.source.current == ()
        kube_api.apply_pod("a", "10.0.0.1", labels=LABELS)
        await until(lambda: harness.source.current == ("10.0.0.1:8000",))


async def test_pods_join_when_ready_and_leave_when_not(kube_api: KubeApi, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="epp.pools.kubernetes")
    kube_api.apply_pod("a", "10.0.0.1", labels=LABELS)
    kube_api.apply_pod("b", "10.0.0.2", labels=LABELS, ready=False)
    async with watching(kube_api) as harness:
        kube_api.apply_pod("b", "10.0.0.2", labels=LABELS)
        assert await until(lambda: harness.source.current == ("10.0.0.1:8000", "10.0.0.2:8000")) < 0.5
        kube_api.apply_pod("a", "10.0.0.1", labels=LABELS, ready=False)
        assert await until(lambda: harness.source.current == ("10.0.0.2:8000",)) < 0.5
        assert isinstance(harness.source.current, tuple)
    changed = [vars(r) for r in caplog.records if r.getMessage() == "pool members changed"]
    assert [(c["pool"], c["added"], c["removed"]) for c in changed] == [("chat", 1, 0), ("chat", 1, 0), ("chat", 0, 1)]


async def test_terminating_and_deleted_pods_leave(kube_api: KubeApi) -> None:
    for name, ip in (("a", "10.0.0.1"), ("b", "10.0.0.2"), ("c", "10.0.0.3")):
        kube_api.apply_pod(name, ip, labels=LABELS)
    async with watching(kube_api) as harness:
        kube_api.terminate_pod("a")
        await until(lambda: harness.source.current == ("10.0.0.2:8000", "10.0.0.3:8000"))
        kube_api.delete_pod("a")
        kube_api.delete_pod("b")
        await until(lambda: harness.source.current == ("10.0.0.3:8000",))


async def test_a_new_pod_ip_replaces_the_old_one(kube_api: KubeApi) -> None:
    kube_api.apply_pod("a", "10.0.0.1", labels=LABELS)
    async with watching(kube_api) as harness:
        kube_api.apply_pod("a", "10.0.0.9", labels=LABELS)
        await until(lambda: harness.source.current == ("10.0.0.9:8000",))


async def test_only_the_selected_pods_of_the_namespace_count(kube_api: KubeApi) -> None:
    kube_api.apply_pod("a", "10.0.0.1", labels=LABELS | {"extra": "yes"})
    kube_api.apply_pod("other-tier", "10.0.0.2", labels={"app": "vllm", "tier": "b"})
    kube_api.apply_pod("other-ns", "10.0.0.3", labels=LABELS, namespace="elsewhere")
    async with watching(kube_api) as harness:
        assert harness.source.current == ("10.0.0.1:8000",)
        kube_api.apply_pod("unlabelled", "10.0.0.4", labels={"app": "vllm"})
        kube_api.apply_pod("other-ns-later", "10.0.0.5", labels=LABELS, namespace="elsewhere")
        kube_api.apply_pod("b", "10.0.0.6", labels=LABELS)
        await until(lambda: harness.source.current == ("10.0.0.1:8000", "10.0.0.6:8000"))
        kube_api.apply_pod("b", "10.0.0.6", labels={"app": "vllm"})  # relabelled out of the pool
        await until(lambda: harness.source.current == ("10.0.0.1:8000",))
    requests = kube_api.requests("list", "pods") + kube_api.requests("watch", "pods")
    assert requests and all(params["labelSelector"] == "app=vllm,tier=a" for params in requests)


async def test_dropped_stream_resumes_without_relisting(kube_api: KubeApi) -> None:
    async with watching(kube_api) as harness:
        await until(lambda: kube_api.open_watches() == 1)
        assert kube_api.drop_watches() == 1
        kube_api.apply_pod("a", "10.0.0.1", labels=LABELS)
        await until(lambda: harness.source.current == ("10.0.0.1:8000",))
        assert len(kube_api.requests("list", "pods")) == 1
        assert len(kube_api.requests("watch", "pods")) == 2
        assert harness.restarts("dropped") == 1


async def test_error_event_410_relists_and_forgets_pods_deleted_meanwhile(kube_api: KubeApi) -> None:
    kube_api.apply_pod("a", "10.0.0.1", labels=LABELS)
    kube_api.apply_pod("b", "10.0.0.2", labels=LABELS)
    async with watching(kube_api) as harness:
        kube_api.stop()
        kube_api.delete_pod("b")
        kube_api.apply_pod("c", "10.0.0.3", labels=LABELS)
        kube_api.expire_history()
        kube_api.start()
        await until(lambda: harness.source.current == ("10.0.0.1:8000", "10.0.0.3:8000"), timeout_s=3)
        assert len(kube_api.requests("list", "pods")) == 2
        assert harness.restarts("gone") == 1


async def test_http_410_relists_and_forgets_pods_deleted_meanwhile(kube_api: KubeApi) -> None:
    kube_api.apply_pod("a", "10.0.0.1", labels=LABELS)
    async with watching(kube_api) as harness:
        await until(lambda: kube_api.open_watches() == 1)
        kube_api.fail_next("watch", 410)
        kube_api.drop_watches()
        kube_api.delete_pod("a")
        await until(lambda: len(kube_api.requests("list", "pods")) == 2)
        await until(lambda: harness.source.current == ())
        assert harness.restarts("gone") == 1


async def test_start_waits_for_an_unreachable_api(kube_api: KubeApi) -> None:
    kube_api.apply_pod("a", "10.0.0.1", labels=LABELS)
    kube_api.stop()
    telemetry = Telemetry.create("epp")
    source = pool_source(kube_api, telemetry, [])
    starting = asyncio.create_task(source.start())
    await asyncio.sleep(0.3)
    assert not starting.done()
    kube_api.start()
    await asyncio.wait_for(starting, 3)
    assert source.current == ("10.0.0.1:8000",)
    assert Harness(source, telemetry).restarts("error") >= 1
    await source.stop()


async def test_stop_before_the_first_list_fails_start(kube_api: KubeApi) -> None:
    kube_api.stop()
    source = pool_source(kube_api, Telemetry.create("epp"), [])
    starting = asyncio.create_task(source.start())
    await asyncio.sleep(0.1)
    await source.stop()
    with pytest.raises(RuntimeError, match="stopped before the first list"):
        await starting


async def test_stop_is_prompt_while_a_watch_is_blocked(kube_api: KubeApi) -> None:
    async with watching(kube_api, watch_timeout_s=300) as harness:
        await until(lambda: kube_api.open_watches() == 1)
        started = time.monotonic()
        await harness.source.stop()
        assert time.monotonic() - started < 0.5
        assert not [t for t in threading.enumerate() if t.name.startswith("pool-")]
        await until(lambda: kube_api.open_watches() == 0)
