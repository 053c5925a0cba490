"""Assemble and run the endpoint picker from ``Settings``."""

from __future__ import annotations

from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as extproc_grpc

from epp.pools import PoolDirectory
from epp.servicer import SERVICE_NAME, EndpointPickerServicer
from tokenlabs.server import PluginServer, ServiceBinding, serve_until_signalled
from tokenlabs.settings import Settings
from tokenlabs.telemetry import Telemetry

# The picker never sees bodies: its messages are headers and metadata only.
MAX_MESSAGE_BYTES = 1024 * 1024


async def serve(settings: Settings) -> None:
    telemetry = Telemetry.create("epp")
    servicer = EndpointPickerServicer(PoolDirectory.from_settings(settings), telemetry)
    binding = ServiceBinding(SERVICE_NAME, extproc_grpc.add_ExternalProcessorServicer_to_server, servicer)
    await serve_until_signalled(PluginServer(settings.epp, telemetry, [binding], MAX_MESSAGE_BYTES))
