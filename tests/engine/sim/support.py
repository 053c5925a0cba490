"""Test helpers: a fast config, fake sleeps that hold requests mid-flight, a worker served on loopback."""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from engine.sim.config import SimConfig
from engine.sim.runner import WorkerBinding, listening
from engine.sim.worker import SimWorker

# Latencies small enough to keep the suite fast, large enough that requests overlap when a test wants them to.
FAST_CONFIG = SimConfig(
    ttft_base_ms=1.0, ttft_per_prompt_token_ms=0.0, itl_ms=1.0, itl_batch_factor=0.0, output_tokens=4
)


class HeldSleep:
    """A sleep that lets the first ``free_calls`` through at once and holds every later one until released,
    so a test can look at a worker while its requests are in flight."""

    def __init__(self, free_calls: int = 0) -> None:
        self._free_calls = free_calls
        self._released = asyncio.Event()
        self.held = 0

    async def __call__(self, seconds: float) -> None:
        if self._free_calls > 0:
            self._free_calls -= 1
            return
        self.held += 1
        await self._released.wait()

    def release(self) -> None:
        self._released.set()


async def instant_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


async def wait_until(condition: Callable[[], bool], within_seconds: float = 3.0) -> None:
    # Polled: the conditions read worker state that has no event to wait on.
    poll_seconds = 0.005
    for _ in range(int(within_seconds / poll_seconds)):
        if condition():
            return
        await asyncio.sleep(poll_seconds)
    raise AssertionError(f"condition still false after {within_seconds} s")


@asynccontextmanager
async def served(worker: SimWorker) -> AsyncIterator[str]:
    """The worker behind the production runner on a free loopback port; yields its base URL."""
    async with listening([WorkerBinding(worker, "127.0.0.1", 0)], drain_seconds=0.5) as (listening_worker,):
        yield listening_worker.url


async def read_sse(response: aiohttp.ClientResponse) -> list[Any]:
    """The data of every server-sent event, JSON-decoded except the literal ``[DONE]``."""
    body = (await response.read()).decode()
    assert body.endswith("\n\n"), body[-200:]
    events = []
    for frame in body.split("\n\n")[:-1]:
        assert frame.startswith("data: "), frame
        data = frame.removeprefix("data: ")
        events.append(data if data == "[DONE]" else orjson.loads(data))
    return events
