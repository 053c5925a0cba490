"""Assemble and run the extproc server from ``Settings``."""

from __future__ import annotations

from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as extproc_grpc

from extproc.metering import Metering
from extproc.servicer import SERVICE_NAME, ExternalProcessorServicer
from extproc.usage_service import usage_binding
from tokenlabs.quota.factory import open_quota_store
from tokenlabs.server import PluginServer, ServiceBinding, serve_until_signalled
from tokenlabs.settings import Settings
from tokenlabs.telemetry import Telemetry


async def serve(settings: Settings) -> None:
    telemetry = Telemetry.create("extproc")
    store = open_quota_store(settings.quota_store, telemetry)
    metering = Metering(telemetry)
    servicer = ExternalProcessorServicer(settings, telemetry, metering, store)
    binding = ServiceBinding(SERVICE_NAME, extproc_grpc.add_ExternalProcessorServicer_to_server, servicer)
    bindings = [binding, usage_binding(metering, store, settings.tiers)]
    server = PluginServer(settings.extproc, telemetry, bindings, settings.limits.max_request_body_bytes)
    try:
        await serve_until_signalled(server)
    finally:
        # After the drain: settle what the last streams owe, then let the store flush and close.
        await servicer.close()
        await store.close()
