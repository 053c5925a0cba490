"""A torch worker on its address: model loading, the HTTP server, and SIGINT/SIGTERM draining."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from engine.serve.api import build_app
from engine.serve.model import load_model
from engine.serve.options import ServeOptions
from engine.serve.worker import TorchWorker
from engine.sim.runner import socket_url
from engine.spec.models.catalog import model_directory
from engine.spec.runner import set_threads


def build_worker(options: ServeOptions) -> TorchWorker:
    """Sets the process's torch threads, finds and loads the model and builds the worker (close it when done).

    Raises ``engine.spec.models.smollm2.ModelUnavailableError`` (SmolLM2 neither cached nor installed),
    ``OSError`` (not a checkpoint), ``ValueError`` (a model or ``max_model_len`` the core cannot run) and
    ``engine.spec.bench_modes.ModeUnavailableError`` (a drafter without its exit head).
    """
    set_threads(options.threads)
    return TorchWorker(load_model(model_directory(options.model, options.model_dir), options.dtype), options)


@asynccontextmanager
async def listening(worker: TorchWorker, host: str, port: int, drain_seconds: float) -> AsyncIterator[str]:
    """Serve ``worker`` on ``host:port`` until the block exits, yielding its URL; then drain: stop accepting, give
    the requests in flight (queued ones included) up to ``drain_seconds`` to finish, and cancel what is left."""
    # Cancelling the handler of a client that went away is what frees its place in the queue, or the model.
    runner = web.AppRunner(build_app(worker), handler_cancellation=True, shutdown_timeout=drain_seconds)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield socket_url(runner.addresses[0])
    finally:
        await runner.cleanup()


async def serve(
    worker: TorchWorker,
    options: ServeOptions,
    stop_event: asyncio.Event,
    *,
    on_ready: Callable[[str], None] = lambda url: None,
) -> None:
    """Serve until ``stop_event`` is set, then drain and return."""
    async with listening(worker, options.host, options.port, options.drain_seconds) as url:
        on_ready(url)
        await stop_event.wait()


async def serve_until_signalled(
    worker: TorchWorker, options: ServeOptions, *, on_ready: Callable[[str], None] = lambda url: None
) -> None:
    """``serve`` until SIGINT or SIGTERM."""
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop_event.set)
    try:
        await serve(worker, options, stop_event, on_ready=on_ready)
    finally:
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signal_number)
