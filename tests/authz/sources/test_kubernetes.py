"""KubernetesTenantSource against the kmock-based API (real HTTP, the official client), faults included."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from authz.secrets import key_digest
from authz.snapshot import TenantSnapshot
from authz.sources.kubernetes import KubernetesTenantSource
from tests.kube_api import KubeApi, tenant_secret
from tests.kube_store import parse_selector, selects
from tokenlabs.kube.client import core_api
from tokenlabs.kube.reflector import WatchOptions
from tokenlabs.telemetry import Telemetry

TIERS = frozenset({"free", "pro", "enterprise"})
SELECTOR = "authorino.kuadrant.io/managed-by=authorino"
FAST = WatchOptions(backoff_initial_s=0.01, backoff_max_s=0.05, coalesce_s=0.01)


@dataclass
class Harness:
    source: KubernetesTenantSource
    telemetry: Telemetry
    published: list[TenantSnapshot] = field(default_factory=list)

    def live(self, key: str) -> bool:
        return key_digest(key) in self.source.current.by_digest

    def metric(self, name: str, **labels: str) -> float:
        wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
        match = re.search(rf"^{name}_total\{{{wanted}\}} (\S+)$", self.telemetry.render().decode(), re.MULTILINE)
        return float(match[1]) if match else 0.0


async def until(predicate: Callable[[], bool], timeout_s: float = 2.0) -> float:
    """Seconds until ``predicate()`` holds; fails the test after ``timeout_s``."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout_s, "condition not reached in time"
        await asyncio.sleep(0.005)
    return time.monotonic() - started


@contextlib.asynccontextmanager
async def watching(kube: KubeApi, selector: str = SELECTOR, **options: Any) -> AsyncIterator[Harness]:
    telemetry = Telemetry.create("authz")
    published: list[TenantSnapshot] = []
    source = KubernetesTenantSource(
        kube.core_api(),
        kube.namespace,
        selector,
        TIERS,
        telemetry,
        published.append,
        options=dataclasses.replace(FAST, **options),
    )
    harness = Harness(source, telemetry, published)
    await source.start()
    try:
        yield harness
    finally:
        await source.stop()
        telemetry.shutdown()


@pytest.fixture(autouse=True)
def no_threads_left() -> Iterator[None]:
    yield
    names = ("tenants-kube-watch", "tenants-kube-publish", "kube-api")
    deadline = time.monotonic() + 2
    while any(t.name in names for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not [t.name for t in threading.enumerate() if t.name in names]


async def test_start_loads_existing_secrets_and_applied_keys_go_live(kube_api: KubeApi) -> None:
    kube_api.apply_secret("tenant-acme", "tlabs_acme_1", tenant_id="acme")
    async with watching(kube_api) as harness:
        assert harness.live("tlabs_acme_1")
        assert harness.source.current.by_digest[key_digest("tlabs_acme_1")].secret == "kuadrant-system/tenant-acme"
        kube_api.apply_secret("tenant-beta", "tlabs_beta_1", tier="free")
        assert await until(lambda: harness.live("tlabs_beta_1"), timeout_s=1.0) < 1.0
        assert harness.source.current.by_digest[key_digest("tlabs_beta_1")].tier == "free"


async def test_updated_key_replaces_the_old_one_and_deleted_key_dies(kube_api: KubeApi) -> None:
    kube_api.apply_secret("tenant-acme", "tlabs_old")
    async with watching(kube_api) as harness:
        kube_api.apply_secret("tenant-acme", "tlabs_new")
        await until(lambda: harness.live("tlabs_new"))
        assert not harness.live("tlabs_old")
        kube_api.delete_secret("tenant-acme")
        await until(lambda: not harness.live("tlabs_new"))
        assert len(harness.source.current) == 0


async def test_broken_secrets_are_refused_with_the_reason(kube_api: KubeApi) -> None:
    async with watching(kube_api) as harness:
        kube_api.apply_secret("tenant-gold", "tlabs_gold", tier="platinum")
        kube_api.apply_secret("tenant-bare", "tlabs_bare", tier=None)
        await until(lambda: len(harness.source.current.rejections) == 2)
        snapshot = harness.source.current
        reasons = {rejection.secret: rejection.reason for rejection in snapshot.rejections}
        assert reasons == {
            "kuadrant-system/tenant-gold": "unknown tier 'platinum'",
            "kuadrant-system/tenant-bare": "missing annotation kuadrant.io/groups",
        }
        assert snapshot.refused[key_digest("tlabs_gold")].reason == "unknown tier 'platinum'"
        assert not harness.live("tlabs_gold") and not harness.live("tlabs_bare")


async def test_label_selector_is_applied_by_the_server(kube_api: KubeApi) -> None:
    kube_api.apply_secret("unmanaged", "tlabs_unmanaged", labels={"app": "token-labs"})
    async with watching(kube_api) as harness:
        kube_api.apply_secret("unmanaged-later", "tlabs_later", labels={})
        kube_api.apply_secret("managed", "tlabs_managed")
        await until(lambda: harness.live("tlabs_managed"))
        assert not harness.live("tlabs_unmanaged") and not harness.live("tlabs_later")
        assert all(
            params["labelSelector"] == SELECTOR for params in kube_api.requests("list") + kube_api.requests("watch")
        )
        # Losing the label is a DELETED for a selector watch: the key dies although the Secret still exists.
        kube_api.apply_secret("managed", "tlabs_managed", labels={"app": "token-labs"})
        await until(lambda: not harness.live("tlabs_managed"))


async def test_pages_are_followed_to_the_end(kube_api: KubeApi) -> None:
    kube_api.apply(*[tenant_secret(f"tenant-{i}", f"tlabs_{i}") for i in range(5)])
    async with watching(kube_api, page_size=2) as harness:
        assert len(harness.source.current) == 5
    lists = kube_api.requests("list")
    assert [params.get("limit") for params in lists] == ["2", "2", "2"]
    assert "continue" not in lists[0] and all(params.get("continue") for params in lists[1:])


async def test_many_secrets_list_in_seconds(kube_api: KubeApi) -> None:
    # The client's model deserialization takes about 2 ms per Secret: 40 s here. Raw JSON keeps it near 1 s.
    kube_api.apply(*[tenant_secret(f"tenant-{i:05d}", f"tlabs_{i}") for i in range(20_000)])
    started = time.monotonic()
    async with watching(kube_api) as harness:
        assert time.monotonic() - started < 5
        assert len(harness.source.current) == 20_000
    assert len(kube_api.requests("list")) == 40


async def test_burst_is_published_as_few_immutable_snapshots(kube_api: KubeApi) -> None:
    async with watching(kube_api, coalesce_s=0.1) as harness:
        first = harness.source.current
        kube_api.apply(*[tenant_secret(f"tenant-{i}", f"tlabs_{i}") for i in range(300)])
        await until(lambda: len(harness.source.current) == 300)
        await asyncio.sleep(0.1)
        assert len(harness.published) <= 3
        assert len(first) == 0 and harness.published[0] is first
        assert harness.metric("tokenlabs_authz_watch_events", type="ADDED") == 300


async def test_dropped_stream_resumes_from_the_last_version_without_relisting(kube_api: KubeApi) -> None:
    async with watching(kube_api) as harness:
        kube_api.apply_secret("tenant-a", "tlabs_a")
        await until(lambda: harness.live("tlabs_a"))
        await until(lambda: kube_api.open_watches() == 1)
        assert kube_api.drop_watches() == 1
        kube_api.apply_secret("tenant-b", "tlabs_b")
        await until(lambda: harness.live("tlabs_b"))
        assert harness.metric("tokenlabs_authz_watch_restarts", reason="dropped") == 1
        assert len(kube_api.requests("list")) == 1
        versions = [int(params["resourceVersion"]) for params in kube_api.requests("watch")]
        assert len(versions) == 2 and versions[1] > versions[0]


async def test_watch_ended_by_the_server_resumes(kube_api: KubeApi) -> None:
    async with watching(kube_api, watch_timeout_s=1) as harness:
        await until(lambda: harness.metric("tokenlabs_authz_watch_restarts", reason="ended") >= 1, timeout_s=3)
        kube_api.apply_secret("tenant-a", "tlabs_a")
        await until(lambda: harness.live("tlabs_a"))
        assert len(kube_api.requests("list")) == 1
        assert all(params["timeoutSeconds"] == "1" for params in kube_api.requests("watch"))


async def test_gone_relists_and_forgets_secrets_deleted_meanwhile(kube_api: KubeApi) -> None:
    kube_api.apply_secret("tenant-a", "tlabs_a")
    kube_api.apply_secret("tenant-b", "tlabs_b")
    async with watching(kube_api) as harness:
        kube_api.stop()
        kube_api.delete_secret("tenant-b")
        kube_api.apply_secret("tenant-c", "tlabs_c")
        kube_api.expire_history()
        kube_api.start()
        await until(lambda: harness.live("tlabs_c") and not harness.live("tlabs_b"), timeout_s=3)
        assert harness.live("tlabs_a")
        assert harness.metric("tokenlabs_authz_watch_restarts", reason="gone") == 1
        assert harness.metric("tokenlabs_authz_watch_events", type="ERROR") == 1
        assert len(kube_api.requests("list")) == 2


async def test_http_410_on_a_watch_relists(kube_api: KubeApi) -> None:
    async with watching(kube_api) as harness:
        await until(lambda: kube_api.open_watches() == 1)
        kube_api.fail_next("watch", 410)
        kube_api.drop_watches()
        await until(lambda: harness.metric("tokenlabs_authz_watch_restarts", reason="gone") == 1)
        await until(lambda: len(kube_api.requests("list")) == 2)
        kube_api.apply_secret("tenant-a", "tlabs_a")
        await until(lambda: harness.live("tlabs_a"))


async def test_bookmark_advances_the_version_so_compaction_needs_no_relist(kube_api: KubeApi) -> None:
    async with watching(kube_api) as harness:
        # A change this watch does not see moves the version on; only a BOOKMARK tells the source about it.
        kube_api.apply_secret("unmanaged", "tlabs_unmanaged", labels={})
        seen = harness.metric("tokenlabs_authz_watch_events", type="BOOKMARK")
        # One bookmark sent before that change may still be on its way; the second one is surely after it.
        await until(lambda: harness.metric("tokenlabs_authz_watch_events", type="BOOKMARK") >= seen + 2)
        kube_api.expire_history()
        kube_api.drop_watches()
        await until(lambda: len(kube_api.requests("watch")) == 2)
        assert kube_api.requests("watch")[1]["resourceVersion"] == str(kube_api.resource_version)
        assert harness.metric("tokenlabs_authz_watch_restarts", reason="gone") == 0
        assert len(kube_api.requests("list")) == 1


async def test_api_errors_back_off_and_recover(kube_api: KubeApi) -> None:
    kube_api.apply_secret("tenant-a", "tlabs_a")
    kube_api.fail_next("list", 500, times=2)
    kube_api.fail_next("watch", 503)
    async with watching(kube_api) as harness:
        assert harness.live("tlabs_a")
        await until(lambda: len(kube_api.requests("watch")) == 2)
        assert harness.metric("tokenlabs_authz_watch_restarts", reason="error") == 3


async def test_start_waits_for_an_unreachable_api(kube_api: KubeApi) -> None:
    kube_api.apply_secret("tenant-a", "tlabs_a")
    kube_api.stop()
    telemetry = Telemetry.create("authz")
    source = KubernetesTenantSource(kube_api.core_api(), kube_api.namespace, SELECTOR, TIERS, telemetry, options=FAST)
    starting = asyncio.create_task(source.start())
    await asyncio.sleep(0.3)
    assert not starting.done()
    kube_api.start()
    await asyncio.wait_for(starting, 3)
    assert key_digest("tlabs_a") in source.current.by_digest
    assert Harness(source, telemetry).metric("tokenlabs_authz_watch_restarts", reason="error") >= 1
    await source.stop()


async def test_stop_before_the_first_list_fails_start(kube_api: KubeApi) -> None:
    kube_api.stop()
    source = KubernetesTenantSource(
        kube_api.core_api(), kube_api.namespace, SELECTOR, TIERS, Telemetry.create("authz"), options=FAST
    )
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
        assert not [t for t in threading.enumerate() if t.name.startswith("tenants-kube")]
        await until(lambda: kube_api.open_watches() == 0)


async def test_logs_name_secrets_but_never_keys(kube_api: KubeApi, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    kube_api.apply_secret("tenant-a", "tlabs_secret_value_a", tier="platinum")
    async with watching(kube_api) as harness:
        await until(lambda: kube_api.open_watches() == 1)
        kube_api.drop_watches()
        kube_api.apply_secret("tenant-b", "tlabs_secret_value_b")
        await until(lambda: harness.live("tlabs_secret_value_b"))
    records = " ".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records if r.name.startswith("authz"))
    assert "tenant secret watch restarting" in records and "dropped" in records
    assert "tlabs_secret_value" not in records and "dGxhYnNf" not in records  # nor its base64


def test_fake_api_serves_the_real_client_and_kubeconfig(kube_api: KubeApi, tmp_path: Path) -> None:
    api = core_api(str(kube_api.write_kubeconfig(tmp_path / "kubeconfig")), config_key="tenants.source")
    namespace = kube_api.namespace
    manifest = tenant_secret("tenant-a", "tlabs_a")
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(**{k: manifest["metadata"][k] for k in ("name", "labels", "annotations")}),
        string_data=manifest["stringData"],
    )
    created = api.create_namespaced_secret(namespace, secret)
    assert created.data == {"api_key": "dGxhYnNfYQ=="} and created.string_data is None
    assert created.metadata is not None and created.metadata.resource_version is not None
    fetched = api.read_namespaced_secret("tenant-a", namespace)
    assert fetched.metadata is not None and fetched.metadata.annotations is not None
    fetched.metadata.annotations["kuadrant.io/groups"] = "free"
    replaced = api.replace_namespaced_secret("tenant-a", namespace, fetched)
    assert replaced.metadata is not None and replaced.metadata.resource_version is not None
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    with pytest.raises(client.ApiException) as stale:
        api.replace_namespaced_secret("tenant-a", namespace, fetched)
    assert stale.value.status == 409
    api.patch_namespaced_secret("tenant-a", namespace, {"metadata": {"labels": {"app": None}}})
    stored = kube_api.secrets()[0]["metadata"]
    assert stored["labels"] == {"authorino.kuadrant.io/managed-by": "authorino"}
    assert stored["annotations"]["kuadrant.io/groups"] == "free"
    with pytest.raises(client.ApiException) as conflict:
        api.create_namespaced_secret(namespace, secret)
    assert conflict.value.status == 409
    api.delete_namespaced_secret("tenant-a", namespace)
    assert kube_api.secrets() == []
    with pytest.raises(client.ApiException) as missing:
        api.read_namespaced_secret("tenant-a", namespace)
    assert missing.value.status == 404


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_fake_api_serves_kubectl(kube_api: KubeApi, tmp_path: Path) -> None:
    kube_api.apply_secret("tenant-a", "tlabs_a")
    kubeconfig = str(kube_api.write_kubeconfig(tmp_path / "kubeconfig"))
    listed = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, "get", "secrets", "-o", "name"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert listed.stdout.split() == ["secret/tenant-a"]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", True),
        ("app==web,tier!=gold", True),
        ("app in (web, api),!legacy", True),
        ("app notin (web)", False),
        ("legacy", False),
        ("tier", False),
    ],
)
def test_fake_api_label_selectors(selector: str, expected: bool) -> None:
    assert selects(parse_selector(selector), {"metadata": {"labels": {"app": "web"}}}) is expected
