"""Assemble and run the authz server from ``Settings``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc

from authz.servicer import SERVICE_NAME, AuthorizationServicer
from authz.snapshot import TenantSnapshot
from authz.sources import TenantSource
from authz.sources.directory import DirectoryTenantSource
from tokenlabs.errors import ConfigError
from tokenlabs.server import PluginServer, ServiceBinding, serve_until_signalled
from tokenlabs.settings import Settings
from tokenlabs.telemetry import Telemetry

log = logging.getLogger(__name__)


def build_source(settings: Settings, on_publish: Callable[[TenantSnapshot], None]) -> TenantSource:
    if settings.tenants.kind != "directory":
        raise ConfigError("tenants.source", settings.tenants.kind, "is not supported by this build yet")
    return DirectoryTenantSource(settings.tenants.directory, frozenset(settings.tiers), on_publish)


async def serve(settings: Settings) -> None:
    telemetry = Telemetry.create("authz")
    loaded = telemetry.meter.create_gauge("tokenlabs_authz_tenants_loaded", description="Tenants with a live key.")
    rejected = telemetry.meter.create_gauge(
        "tokenlabs_authz_secrets_rejected", description="Secrets refused, with the reason in the logs."
    )

    def on_publish(snapshot: TenantSnapshot) -> None:
        loaded.set(len(snapshot))
        rejected.set(len(snapshot.rejections))
        for rejection in snapshot.rejections:
            log.warning("secret refused", extra={"secret": rejection.secret, "reason": rejection.reason})
        log.info("tenants loaded", extra={"tenants": len(snapshot), "rejected": len(snapshot.rejections)})

    source = build_source(settings, on_publish)

    @contextlib.asynccontextmanager
    async def tenants_loaded() -> AsyncIterator[None]:
        await source.start()
        try:
            yield
        finally:
            await source.stop()

    servicer = AuthorizationServicer(lambda: source.current, telemetry, settings.limits.max_request_body_bytes)
    binding = ServiceBinding(SERVICE_NAME, authz_grpc.add_AuthorizationServicer_to_server, servicer)
    server = PluginServer(settings.authz, telemetry, [binding], settings.limits.max_request_body_bytes)
    await serve_until_signalled(server, tenants_loaded())
