"""Assemble and run the extproc server from ``Settings``."""

from __future__ import annotations

from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as extproc_grpc

from extproc.metering import Metering
from extproc.servicer import SERVICE_NAME, ExternalProcessorServicer
from tokenlabs.server import PluginServer, ServiceBinding, serve_until_signalled
from tokenlabs.settings import Settings
from tokenlabs.telemetry import Telemetry


async def serve(settings: Settings) -> None:
    telemetry = Telemetry.create("extproc")
    servicer = ExternalProcessorServicer(settings, telemetry, Metering(telemetry))
    binding = ServiceBinding(SERVICE_NAME, extproc_grpc.add_ExternalProcessorServicer_to_server, servicer)
    await serve_until_signalled(
        PluginServer(settings.extproc, telemetry, [binding], settings.limits.max_request_body_bytes)
    )
