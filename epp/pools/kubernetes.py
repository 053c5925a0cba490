"""A pool whose members are the ready pods matching a label selector, followed through the Kubernetes API.

Contract (``EndpointSource``): ``start()`` returns once the first complete list of the selector's pods is known
(an empty pool included), retrying with backoff while the API is unreachable; ``stop()`` before that makes
``start()`` raise ``RuntimeError``. A pod is a member while it has an IP, runs (phase ``Running``), is ``Ready``
and is not being deleted: a terminating pod leaves the pool as soon as its ``deletionTimestamp`` is set, before
its endpoints controller catches up. Changes are seen through a watch (``tokenlabs.kube.reflector``) and published
on the event loop, within ``coalesce_s`` of the event. RBAC: ``get``, ``list`` and ``watch`` on ``pods`` in the
pool's namespace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes.client import CoreV1Api

from epp.pools import EndpointSource
from epp.pools.directory import PodSourceFactory
from tokenlabs.kube.client import core_api
from tokenlabs.kube.reflector import DEFAULT_OPTIONS, Reflector, WatchOptions
from tokenlabs.kube.watch import Selection
from tokenlabs.picker_settings import PodSelector, PoolSettings
from tokenlabs.telemetry import Counter, Telemetry

log = logging.getLogger(__name__)

Members = tuple[str, ...]


def member(pod: Mapping[str, Any], port: int) -> str | None:
    """``ip:port`` (``[ip]:port`` for IPv6) of a pod that may take requests, ``None`` for any other pod."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    if meta.get("deletionTimestamp") or status.get("phase") != "Running":
        return None
    ip = status.get("podIP")
    conditions = status.get("conditions") or ()
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions if isinstance(c, Mapping))
    if not ready or not isinstance(ip, str) or not ip:
        return None
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def sorted_members(members: list[str]) -> Members:
    return tuple(sorted(set(members)))


def watch_restarts(telemetry: Telemetry) -> Counter:
    """The restart counter every pod pool of a process shares: a meter keeps only the first instrument of a name."""
    return telemetry.counter(
        "tokenlabs_epp_pool_watch_restarts", "Pod list/watch restarts of a pool, by reason.", ("pool", "reason")
    )


class KubernetesPodEndpoints:
    """The members of pool ``pool_name``: pods selected by ``selector``, reached on its ``target_port``.
    ``restarts`` comes from ``watch_restarts``; ``on_change`` sees every new member list (on the event loop)."""

    def __init__(
        self,
        api: CoreV1Api,
        pool_name: str,
        selector: PodSelector,
        restarts: Counter,
        on_change: Callable[[Members], None] = lambda _: None,
        *,
        options: WatchOptions = DEFAULT_OPTIONS,
    ) -> None:
        self._pool_name = pool_name
        self._on_change = on_change
        self._current: Members = ()
        port = selector.target_port
        self._reflector = Reflector[str, Members](
            Selection(api.list_namespaced_pod, selector.namespace, selector.label_selector),
            lambda pod: member(pod, port),
            sorted_members,
            self._swap,
            subject="pool pod",
            thread_prefix=f"pool-{pool_name}-kube",
            log=log,
            log_extra={"pool": pool_name, "namespace": selector.namespace},
            on_restart=lambda reason: restarts.add((pool_name, reason)),
            options=options,
        )

    @property
    def current(self) -> Members:
        return self._current

    async def start(self) -> None:
        await self._reflector.start()

    async def stop(self) -> None:
        await self._reflector.stop()

    def _swap(self, members: Members) -> None:
        if members == self._current:
            return
        old, new = set(self._current), set(members)
        self._current = members
        log.info(
            "pool members changed",
            extra={"pool": self._pool_name, "added": len(new - old), "removed": len(old - new), "members": len(new)},
        )
        self._on_change(members)


def pod_source_factory(
    telemetry: Telemetry,
    kubeconfig: str | None = None,
    on_change: Callable[[str, Members], None] = lambda _pool, _members: None,
    *,
    options: WatchOptions = DEFAULT_OPTIONS,
) -> PodSourceFactory:
    """The ``pod_source`` for ``PoolDirectory.from_settings``. The API client (from ``kubeconfig``, else as
    ``kubectl`` finds it) and the restart counter are made at the first selector pool, so a config with static
    pools only never needs a cluster; ``ConfigError`` names that pool when no cluster configuration is found.
    ``on_change(pool, members)`` sees every pool's new member lists."""
    api: CoreV1Api | None = None
    restarts: Counter | None = None

    def make(pool: PoolSettings) -> EndpointSource:
        nonlocal api, restarts
        if pool.pods is None:
            raise ValueError(f"pool {pool.name!r} lists its endpoints: it selects no pods")
        if api is None or restarts is None:
            api = core_api(kubeconfig, config_key=f"pools.{pool.name}.selector")
            restarts = watch_restarts(telemetry)
        name = pool.name
        return KubernetesPodEndpoints(
            api, name, pool.pods, restarts, lambda members: on_change(name, members), options=options
        )

    return make
