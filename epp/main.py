"""Assemble and run the endpoint picker from ``Settings``."""

from __future__ import annotations

import asyncio

from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as extproc_grpc

from epp.pools import PoolDirectory
from epp.servicer import SERVICE_NAME, EndpointPickerServicer
from tokenlabs.server import PluginServer, ServiceBinding, install_stop_signals
from tokenlabs.settings import Settings
from tokenlabs.telemetry import Telemetry


async def serve(settings: Settings) -> None:
    telemetry = Telemetry.create("epp")
    servicer = EndpointPickerServicer(PoolDirectory.from_settings(settings), telemetry)
    binding = ServiceBinding(SERVICE_NAME, extproc_grpc.add_ExternalProcessorServicer_to_server, servicer)
    stop = asyncio.Event()
    install_stop_signals(stop)
    # The picker never sees bodies; its messages are headers only.
    async with PluginServer(settings.epp, telemetry, [binding], max_message_bytes=1024 * 1024) as server:
        await server.mark_ready()
        await stop.wait()
