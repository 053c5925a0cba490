"""Tenants from Kubernetes Secrets, followed by a ``tokenlabs.kube.reflector.Reflector``.

Contract (``TenantSource``): ``start()`` returns once the first complete list is published, retrying with backoff
while the API is unreachable (until ``stop()``, which then makes ``start()`` raise ``RuntimeError``). Later changes
are published as new immutable snapshots, each rebuilt (O(tenants)) once per burst of changes; ``stop()`` returns
within about two seconds, even mid-read. The work runs on the threads ``tenants-kube-watch`` and
``tenants-kube-publish``; ``current`` and the metric counters change only on the event loop. Logs carry Secret
names and reasons, never keys or data.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from kubernetes.client import CoreV1Api

from authz.secrets import Rejection, Tenant, parse_secret
from authz.snapshot import TenantSnapshot, build_snapshot
from tokenlabs.kube.reflector import DEFAULT_OPTIONS, Reflector, WatchOptions
from tokenlabs.kube.watch import Selection
from tokenlabs.telemetry import Telemetry

log = logging.getLogger(__name__)

Entry = Tenant | Rejection


def parse_object(obj: dict[str, Any], known_tiers: frozenset[str]) -> Entry | None:
    # List items come without ``kind`` from a real API server; everything listed here is a Secret.
    obj.setdefault("kind", "Secret")
    return parse_secret(obj, known_tiers)


class KubernetesTenantSource:
    """Secrets in ``namespace`` matching ``label_selector`` (empty: all), parsed against ``known_tiers``;
    ``on_publish`` sees every new snapshot (on the event loop)."""

    def __init__(
        self,
        api: CoreV1Api,
        namespace: str,
        label_selector: str,
        known_tiers: frozenset[str],
        telemetry: Telemetry,
        on_publish: Callable[[TenantSnapshot], None] = lambda _: None,
        *,
        options: WatchOptions = DEFAULT_OPTIONS,
    ) -> None:
        self._on_publish = on_publish
        self._restarts = telemetry.counter(
            "tokenlabs_authz_watch_restarts", "Tenant Secret list/watch restarts, by reason.", ("reason",)
        )
        self._events = telemetry.counter("tokenlabs_authz_watch_events", "Tenant Secret watch events.", ("type",))
        self._snapshot = TenantSnapshot()
        self._reflector = Reflector[Entry, TenantSnapshot](
            Selection(api.list_namespaced_secret, namespace, label_selector),
            lambda obj: parse_object(obj, known_tiers),
            build_snapshot,
            self._swap,
            subject="tenant secret",
            thread_prefix="tenants-kube",
            log=log,
            log_extra={"namespace": namespace},
            on_restart=lambda reason: self._restarts.add((reason,)),
            on_events=self._count_events,
            options=options,
        )

    @property
    def current(self) -> TenantSnapshot:
        return self._snapshot

    async def start(self) -> None:
        await self._reflector.start()

    async def stop(self, timeout_s: float = 2.0) -> None:
        await self._reflector.stop(timeout_s)

    def _swap(self, snapshot: TenantSnapshot) -> None:
        self._snapshot = snapshot
        self._on_publish(snapshot)

    def _count_events(self, counts: Counter[str]) -> None:
        for kind, count in counts.items():
            self._events.add((kind,), count)
