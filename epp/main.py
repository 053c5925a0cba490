"""Assemble and run the endpoint picker from ``Settings``."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator

from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as extproc_grpc

from epp.metrics.scraper import Scraper
from epp.metrics.snapshot import MetricsBoard
from epp.picking import EndpointPicker
from epp.pools.directory import PoolDirectory
from epp.pools.kubernetes import pod_source_factory
from epp.scheduling.framework import PLUGIN_BUCKETS, Scheduler
from epp.scheduling.registry import build_profile
from epp.servicer import SERVICE_NAME, EndpointPickerServicer
from tokenlabs.server import PluginServer, ServiceBinding, serve_until_signalled
from tokenlabs.settings import Settings
from tokenlabs.telemetry import Telemetry

# Bodies come buffered (the gateway's buffer filter caps them at limits.max_request_body_bytes); leave room for
# the rest of the message.
MESSAGE_OVERHEAD_BYTES = 64 * 1024


async def serve(settings: Settings) -> None:
    profile = build_profile(settings.epp.scheduling)
    telemetry = Telemetry.create("epp")
    pools = PoolDirectory.from_settings(settings, pod_source_factory(telemetry))
    board = MetricsBoard()
    plugin_timing = telemetry.histogram(
        "tokenlabs_epp_plugin_duration_seconds",
        "Time in each scheduling plugin call.",
        ("extension_point", "plugin"),
        PLUGIN_BUCKETS,
    )
    scheduler = Scheduler(profile, settings.epp.fallbacks, random.Random(), plugin_timing)
    picker = EndpointPicker(pools, board, scheduler, settings.epp)
    servicer = EndpointPickerServicer(picker, telemetry)
    binding = ServiceBinding(SERVICE_NAME, extproc_grpc.add_ExternalProcessorServicer_to_server, servicer)
    scraper = Scraper(
        pools.pools.values(),
        board,
        telemetry,
        interval_s=settings.epp.scrape_interval_s,
        timeout_s=settings.epp.scrape_timeout_s,
        staleness_s=settings.epp.metrics_staleness_s,
        on_departed=picker.forget,
    )
    server = PluginServer(
        settings.epp, telemetry, [binding], settings.limits.max_request_body_bytes + MESSAGE_OVERHEAD_BYTES
    )
    await serve_until_signalled(server, _watching(pools, scraper))


@contextlib.asynccontextmanager
async def _watching(pools: PoolDirectory, scraper: Scraper) -> AsyncIterator[None]:
    """Pools listed and every member scraped once (SERVING from then on); stopped in reverse on the way out."""
    await pools.start()
    try:
        await scraper.start()
        try:
            yield
        finally:
            await scraper.stop()
    finally:
        await pools.stop()
