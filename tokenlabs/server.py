"""The grpc.aio scaffold every plugin server runs in.

What it guarantees: ``grpc.health.v1`` reports NOT_SERVING until the server says its data is loaded; reflection
lists every service; messages up to the configured body size (plus headroom) are accepted, so multi-MiB request
bodies do not turn into RESOURCE_EXHAUSTED; SIGTERM/SIGINT flips health to NOT_SERVING, stops accepting new
streams and waits up to ``drain_seconds`` for in-flight ones before exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tokenlabs.server_settings import ServerSettings
from tokenlabs.telemetry import Telemetry, start_metrics_http

log = logging.getLogger(__name__)

# Envoy wraps a body in a few hundred bytes of framing; leave generous room for headers and metadata.
MESSAGE_HEADROOM_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ServiceBinding:
    """One gRPC service to host: its full name (for health and reflection) and how to add it."""

    name: str
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: Any


class PluginServer:
    """Hosts the given services plus health, reflection and ``/metrics``; use as ``async with``."""

    def __init__(
        self,
        settings: ServerSettings,
        telemetry: Telemetry,
        services: Sequence[ServiceBinding],
        max_message_bytes: int,
    ) -> None:
        self._settings = settings
        self._telemetry = telemetry
        self._services = tuple(services)
        limit = max_message_bytes + MESSAGE_HEADROOM_BYTES
        self._options = (
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            # A second server on the same port must fail loudly, not share traffic silently.
            ("grpc.so_reuseport", 0),
        )
        self._health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._metrics: web.AppRunner | None = None

    @property
    def settings(self) -> ServerSettings:
        return self._settings

    @property
    def service(self) -> str:
        return self._telemetry.service

    async def __aenter__(self) -> PluginServer:
        server = grpc.aio.server(options=self._options)
        for binding in self._services:
            binding.add_to_server(binding.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names = [binding.name for binding in self._services]
        reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
        await self._set_status(health_pb2.HealthCheckResponse.NOT_SERVING)
        server.add_insecure_port(self._settings.grpc_address)
        await server.start()
        self._server = server
        self._metrics = await start_metrics_http(self._telemetry, self._settings.host, self._settings.metrics_port)
        log.info(
            "server listening",
            extra={
                "service": self._telemetry.service,
                "grpc": self._settings.grpc_address,
                "metrics_port": self._settings.metrics_port,
            },
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.drain()

    async def mark_ready(self) -> None:
        """Report SERVING: call once the server's data (tenants, pools) is loaded."""
        await self._set_status(health_pb2.HealthCheckResponse.SERVING)
        log.info("server ready", extra={"service": self._telemetry.service})

    async def mark_not_ready(self) -> None:
        await self._set_status(health_pb2.HealthCheckResponse.NOT_SERVING)

    async def _set_status(self, status: int) -> None:
        for name in ("", *(binding.name for binding in self._services)):
            await self._health.set(name, status)

    async def drain(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        await self._health.enter_graceful_shutdown()
        log.info("draining", extra={"service": self._telemetry.service, "grace_s": self._settings.drain_seconds})
        await server.stop(grace=self._settings.drain_seconds)
        if self._metrics is not None:
            await self._metrics.cleanup()
        self._telemetry.shutdown()
        log.info("stopped", extra={"service": self._telemetry.service})


async def serve_until_signalled(
    server: PluginServer, loaded: contextlib.AbstractAsyncContextManager[object] | None = None
) -> None:
    """Run ``server`` until SIGTERM/SIGINT. It turns SERVING once ``loaded`` has been entered (the server's data
    is in); a signal while it is still loading (say, the Kubernetes API is unreachable) cancels the loading and
    exits. On a signal ``loaded`` is exited first (background refreshers stop, their last snapshot stays in use),
    then the server drains."""
    stop = asyncio.Event()
    install_stop_signals(stop)
    async with server, contextlib.AsyncExitStack() as resources:
        entering = asyncio.ensure_future(resources.enter_async_context(loaded or contextlib.nullcontext()))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait((entering, stopping), return_when=asyncio.FIRST_COMPLETED)
        if not entering.done():
            log.info("stopped while loading", extra={"service": server.service})
            entering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await entering
            return
        try:
            entering.result()  # a failure to load ends the server with its error
        except BaseException:
            stopping.cancel()
            raise
        await server.mark_ready()
        await stopping


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop``; a second signal does nothing more (the drain has its own deadline)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
