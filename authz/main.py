"""Assemble and run the authz server from ``Settings``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from opentelemetry.metrics import CallbackOptions, Observation

from authz.secrets import Rejection
from authz.servicer import SERVICE_NAME, AuthorizationServicer
from authz.snapshot import TenantSnapshot
from authz.sources import TenantSource
from authz.sources.directory import DirectoryTenantSource
from authz.tiers import tier_policies
from tokenlabs.quota.factory import open_quota_store
from tokenlabs.server import PluginServer, ServiceBinding, serve_until_signalled
from tokenlabs.settings import Settings
from tokenlabs.telemetry import Telemetry

log = logging.getLogger(__name__)


def build_source(
    settings: Settings, telemetry: Telemetry, on_publish: Callable[[TenantSnapshot], None]
) -> TenantSource:
    known_tiers = frozenset(settings.tiers)
    if settings.tenants.kind == "kubernetes":
        # Imported here so a directory-only deployment never loads the Kubernetes client.
        from authz.sources.kubernetes import KubernetesTenantSource
        from tokenlabs.kube.client import core_api

        return KubernetesTenantSource(
            core_api(config_key="tenants.source"),
            settings.tenants.namespace,
            settings.tenants.label_selector,
            known_tiers,
            telemetry,
            on_publish,
        )
    return DirectoryTenantSource(settings.tenants.directory, known_tiers, on_publish)


class SnapshotReporter:
    """Publishes what a snapshot holds as gauges and logs each refused Secret once (not at every republish)."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._snapshot = TenantSnapshot()
        self._logged: frozenset[Rejection] = frozenset()
        telemetry.meter.create_observable_gauge(
            "tokenlabs_authz_tenants_loaded", callbacks=[self._observe_loaded], description="Live API keys."
        )
        telemetry.meter.create_observable_gauge(
            "tokenlabs_authz_secrets_rejected",
            callbacks=[self._observe_rejected],
            description="Secrets refused, by reason code (the Secret and the full reason are in the logs).",
        )

    def __call__(self, snapshot: TenantSnapshot) -> None:
        self._snapshot = snapshot
        current = frozenset(snapshot.rejections)
        for rejection in current - self._logged:
            log.warning(
                "secret refused", extra={"secret": rejection.secret, "reason": rejection.reason, "code": rejection.code}
            )
        self._logged = current
        log.info("tenants loaded", extra={"tenants": len(snapshot), "rejected": len(snapshot.rejections)})

    def _observe_loaded(self, _: CallbackOptions) -> list[Observation]:
        return [Observation(len(self._snapshot))]

    def _observe_rejected(self, _: CallbackOptions) -> list[Observation]:
        counts: dict[str, int] = {}
        for rejection in self._snapshot.rejections:
            counts[rejection.code] = counts.get(rejection.code, 0) + 1
        return [Observation(count, {"reason": code}) for code, count in counts.items()]


async def serve(settings: Settings) -> None:
    telemetry = Telemetry.create("authz")
    source = build_source(settings, telemetry, SnapshotReporter(telemetry))
    store = open_quota_store(settings.quota_store, telemetry)

    @contextlib.asynccontextmanager
    async def tenants_loaded() -> AsyncIterator[None]:
        try:
            await source.start()
            yield
        finally:
            await source.stop()

    servicer = AuthorizationServicer(
        lambda: source.current,
        tier_policies(settings.tiers),
        store,
        telemetry,
        settings.limits.max_request_body_bytes,
    )
    binding = ServiceBinding(SERVICE_NAME, authz_grpc.add_AuthorizationServicer_to_server, servicer)
    server = PluginServer(settings.authz, telemetry, [binding], settings.limits.max_request_body_bytes)
    try:
        await serve_until_signalled(server, tenants_loaded())
    finally:
        await store.close()  # after the drain: in-flight checks still count
