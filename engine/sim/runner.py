"""Several simulated workers in one process, each behind its own port, as a fleet of vLLM servers would be."""

import asyncio
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from engine.sim.config import SimConfig
from engine.sim.worker import SimWorker, build_app

DEFAULT_DRAIN_SECONDS: Final = 5.0


@dataclass(frozen=True)
class WorkerSpec:
    """One worker to start: the model names it serves (aliases of one model) and where it listens."""

    model_names: tuple[str, ...]
    host: str
    port: int

    def __post_init__(self) -> None:
        if not self.model_names or not all(self.model_names):
            raise ValueError(f"model_names must be non-empty names, got {self.model_names!r}")
        if not self.host:
            raise ValueError("host must not be empty")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port!r}")


@dataclass(frozen=True)
class WorkerBinding:
    worker: SimWorker
    host: str
    port: int


@dataclass(frozen=True)
class ListeningWorker:
    worker: SimWorker
    url: str


@asynccontextmanager
async def listening(
    bindings: Sequence[WorkerBinding], *, drain_seconds: float = DEFAULT_DRAIN_SECONDS
) -> AsyncIterator[list[ListeningWorker]]:
    """Serve each worker on its address until the block exits, then drain them all together: stop accepting,
    give in-flight requests up to ``drain_seconds`` to finish, and cancel what is left."""
    runners: list[web.AppRunner] = []
    try:
        listening_workers = []
        for binding in bindings:
            # Cancelling the handler of a client that went away is what frees its batching slot while it waits.
            runner = web.AppRunner(build_app(binding.worker), handler_cancellation=True, shutdown_timeout=drain_seconds)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, binding.host, binding.port).start()
            listening_workers.append(ListeningWorker(binding.worker, socket_url(runner.addresses[0])))
        yield listening_workers
    finally:
        await asyncio.gather(*(runner.cleanup() for runner in runners))


async def serve(
    specs: Sequence[WorkerSpec],
    config: SimConfig,
    stop_event: asyncio.Event,
    *,
    on_ready: Callable[[WorkerSpec, ListeningWorker], None] = lambda spec, worker: None,
    drain_seconds: float = DEFAULT_DRAIN_SECONDS,
) -> None:
    """Run one worker per spec, all sharing ``config``, until ``stop_event`` is set; then drain and return."""
    bindings = [WorkerBinding(SimWorker(spec.model_names, config), spec.host, spec.port) for spec in specs]
    async with listening(bindings, drain_seconds=drain_seconds) as listening_workers:
        for spec, listening_worker in zip(specs, listening_workers, strict=True):
            on_ready(spec, listening_worker)
        await stop_event.wait()


async def serve_until_signalled(
    specs: Sequence[WorkerSpec],
    config: SimConfig,
    *,
    on_ready: Callable[[WorkerSpec, ListeningWorker], None] = lambda spec, worker: None,
    drain_seconds: float = DEFAULT_DRAIN_SECONDS,
) -> None:
    """``serve`` until SIGINT or SIGTERM."""
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop_event.set)
    try:
        await serve(specs, config, stop_event, on_ready=on_ready, drain_seconds=drain_seconds)
    finally:
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signal_number)


def socket_url(address: object) -> str:
    """The http URL of a listening TCP socket's address."""
    # IPv4 sockets name themselves (host, port), IPv6 ones (host, port, flowinfo, scope_id).
    if not isinstance(address, tuple):
        raise ValueError(f"expected a TCP socket address, got {address!r}")
    host, port = address[0], address[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
