"""A Kubernetes API for tests: real HTTP on a loopback port, Secrets and Pods in memory, faults on demand.

kmock's ``KubernetesEmulator`` keeps objects and streams watch events, but a list+watch client needs more than it
emulates: objects carry no resourceVersion (a list answers ``"..."``), a watch ignores ``resourceVersion`` and
replays every object as ADDED, and ``labelSelector``, ``limit``/``continue``, ``timeoutSeconds`` and bookmarks are
ignored; PUT answers 404 and ``stringData`` is stored as sent. So kmock's ``KubernetesScaffold`` (request parsing,
routing, discovery, Status error bodies) fronts ``tests.kube_store.ObjectStore``, which serves Secrets and Pods
with kube-apiserver's semantics. It runs on aiohttp's low-level server in a thread with its own event loop
(``kmock.Server`` would patch aiohttp's resolver process-wide), so sync and async tests use it alike. Other
resources answer 404.

Faults: ``fail_next`` (HTTP errors for the next requests of a verb), ``drop_watches`` (abort open watch connections
mid-stream), ``expire_history`` (compaction: older resourceVersions get 410), ``stop``/``start`` (the API goes away
and comes back on the same port, objects kept; the helpers keep working while it is away).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp.web
import kmock
import pytest
import yaml
from kubernetes import client

from authz.secrets import MANAGED_BY_LABEL, TENANT_ANNOTATION, TIER_ANNOTATION
from tests.kube_store import PLURALS, Obj, ObjectStore

SECRETS = kmock.resource("", "v1", "secrets")
PODS = kmock.resource("", "v1", "pods")
DEFAULT_NAMESPACE = "kuadrant-system"
TENANT_LABELS: Mapping[str, str] = {MANAGED_BY_LABEL: "authorino", "app": "token-labs"}
POD_LABELS: Mapping[str, str] = {"app": "vllm"}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
CORE_V1_RESOURCES: Obj = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "v1",
    "resources": [
        {"name": plural, "singularName": plural[:-1], "namespaced": True, "kind": kind, "verbs": VERBS}
        for kind, plural in PLURALS.items()
    ],
}


def tenant_secret(
    name: str,
    api_key: str,
    *,
    tier: str | None = "pro",
    tenant_id: str | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    labels: Mapping[str, str] = TENANT_LABELS,
) -> Obj:
    """A tenant Secret in the Authorino format; ``tier=None`` leaves the tier annotation out."""
    annotations = {TENANT_ANNOTATION: tenant_id or name} | ({TIER_ANNOTATION: tier} if tier is not None else {})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels), "annotations": annotations},
        "stringData": {"api_key": api_key},
    }


def pod(
    name: str,
    ip: str | None,
    *,
    ready: bool = True,
    phase: str = "Running",
    labels: Mapping[str, str] = POD_LABELS,
    namespace: str = DEFAULT_NAMESPACE,
) -> Obj:
    """A Pod as the kubelet reports it: ``ip=None`` has no IP yet; ``ready`` is its ``Ready`` condition."""
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    status: Obj = {"phase": phase, "conditions": conditions} | ({"podIP": ip, "podIPs": [{"ip": ip}]} if ip else {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {"containers": [{"name": "worker", "image": "vllm/vllm-openai"}]},
        "status": status,
    }


class KubeApi:
    """One fake API server: its ``url``, clients for it, Secret and Pod helpers and faults. Every method is
    thread-safe (it runs on the server's own loop), so it can be called from sync tests, async tests and other
    threads."""

    def __init__(self, namespace: str = DEFAULT_NAMESPACE, bookmark_interval_s: float = 0.2) -> None:
        self.namespace = namespace
        self.port = 0
        self._store = ObjectStore(bookmark_interval_s)
        self._handler = kmock.KubernetesScaffold()
        self._runner: aiohttp.web.ServerRunner | None = None
        self._clients: list[client.ApiClient] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kube-api", daemon=True)
        self._thread.start()
        self._on_loop(self._handler.__aenter__)
        _ = self._handler[SECRETS] << self._store.serve
        _ = self._handler[PODS] << self._store.serve
        # kmock's own discovery names the core group "/v1", which kubectl rejects.
        _ = self._handler["get /api/v1"] << CORE_V1_RESOURCES

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _on_loop(self, function: Callable[[], Any]) -> Any:
        async def call() -> Any:
            result = function()
            return await result if asyncio.iscoroutine(result) else result

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout=30)

    def start(self) -> None:
        """Serve on the port used before (a free one the first time)."""

        async def start() -> None:
            server = aiohttp.web.Server(self._handler, handler_cancellation=True)
            runner = aiohttp.web.ServerRunner(server, shutdown_timeout=1.0, access_log=None)
            await runner.setup()
            await aiohttp.web.TCPSite(runner, "127.0.0.1", self.port).start()
            self.port, self._runner = runner.addresses[0][1], runner

        self._on_loop(start)

    def stop(self) -> None:
        """Close the port and every connection; the objects stay for the next ``start()``."""

        async def stop() -> None:
            if self._runner is not None:
                self._store.drop_watches()
                await self._runner.cleanup()
                self._runner = None

        self._on_loop(stop)

    def close(self) -> None:
        self.stop()
        self._on_loop(lambda: self._handler.__aexit__(None, None, None))
        for api_client in self._clients:
            api_client.rest_client.pool_manager.clear()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def core_api(self) -> client.CoreV1Api:
        """A real client pointed at this server (closed with it)."""
        api_client = client.ApiClient(client.Configuration(host=self.url))
        self._clients.append(api_client)
        return client.CoreV1Api(api_client)

    def write_kubeconfig(self, path: Path) -> Path:
        context = {"cluster": "kmock", "user": "kmock", "namespace": self.namespace}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "kmock", "user": {"token": "kmock"}}],
            "contexts": [{"name": "kmock", "context": context}],
            "current-context": "kmock",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def apply(self, *manifests: Mapping[str, Any]) -> list[Obj]:
        """Create or replace each object, a Secret unless its ``kind`` says otherwise (in one step: watchers get
        them as one burst); the stored copies."""

        def apply() -> list[Obj]:
            return [
                self._store.write(
                    PLURALS[m.get("kind", "Secret")], m, m.get("metadata", {}).get("namespace") or self.namespace
                )
                for m in manifests
            ]

        return list(self._on_loop(apply))

    # --- Secrets -----------------------------------------------------------------------------------------------

    def apply_secret(self, name: str, api_key: str, **options: Any) -> Obj:
        """``tenant_secret(name, api_key, **options)`` applied, in this server's namespace unless stated."""
        return self.apply(tenant_secret(name, api_key, **{"namespace": self.namespace, **options}))[0]

    def delete_secret(self, name: str, namespace: str | None = None) -> None:
        self._on_loop(lambda: self._store.delete("secrets", namespace or self.namespace, name))

    def secrets(self, namespace: str | None = None) -> list[Obj]:
        return list(self._on_loop(lambda: self._store.stored("secrets", namespace or self.namespace)))

    # --- Pods --------------------------------------------------------------------------------------------------

    def apply_pod(self, name: str, ip: str | None, **options: Any) -> Obj:
        """``pod(name, ip, **options)`` applied (created, or replaced whole: status updates and readiness flips
        alike), in this server's namespace unless stated."""
        return self.apply(pod(name, ip, **{"namespace": self.namespace, **options}))[0]

    def terminate_pod(self, name: str, namespace: str | None = None) -> Obj:
        """A graceful delete's first step: ``deletionTimestamp`` is set while the pod still runs (MODIFIED)."""
        ns = namespace or self.namespace

        def terminate() -> Obj:
            [current] = [p for p in self._store.stored("pods", ns) if p["metadata"]["name"] == name]
            current["metadata"] |= {"deletionTimestamp": "2030-01-01T00:00:00Z", "deletionGracePeriodSeconds": 30}
            return self._store.write("pods", current, ns, create=False)

        return dict(self._on_loop(terminate))

    def delete_pod(self, name: str, namespace: str | None = None) -> None:
        self._on_loop(lambda: self._store.delete("pods", namespace or self.namespace, name))

    def pods(self, namespace: str | None = None) -> list[Obj]:
        return list(self._on_loop(lambda: self._store.stored("pods", namespace or self.namespace)))

    # --- requests and faults ----------------------------------------------------------------------------------

    def requests(self, verb: str, resource: str | None = None) -> list[dict[str, str]]:
        """Query parameters of the requests served so far for ``verb`` (list, watch, get, create, replace, ...),
        on ``resource`` (``secrets``, ``pods``) or on any."""
        served = self._store.served
        return list(self._on_loop(lambda: [dict(p) for r, v, p in served if v == verb and resource in (None, r)]))

    def fail_next(self, verb: str, status: int = 500, times: int = 1) -> None:
        """The next ``times`` requests for ``verb`` (on any resource) answer HTTP ``status`` with a Status body."""
        self._on_loop(lambda: self._store.faults.setdefault(verb, []).extend([status] * times))

    def drop_watches(self) -> int:
        """Abort every open watch connection mid-stream; how many there were."""
        return int(self._on_loop(self._store.drop_watches))

    def expire_history(self) -> None:
        """Compact: a watch from any resourceVersion before now gets an ERROR event with code 410."""
        self._on_loop(self._store.expire_history)

    def open_watches(self) -> int:
        return int(self._on_loop(lambda: sum(watch.alive for watch in self._store.watches)))

    @property
    def resource_version(self) -> int:
        return int(self._on_loop(lambda: self._store.version))


@pytest.fixture
def kube_api() -> Iterator[KubeApi]:
    """A started ``KubeApi``, closed (server, connections, clients, thread) after the test."""
    api = KubeApi()
    api.start()
    try:
        yield api
    finally:
        api.close()
