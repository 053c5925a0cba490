"""Test helpers: a fast config, fake sleeps that hold requests mid-flight or run on virtual time, a worker served on
loopback."""

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from engine.sim.config import SimConfig
from engine.sim.runner import WorkerBinding, listening
from engine.sim.worker import SimWorker
from tests.helpers import sse_events

# Latencies small enough to keep the suite fast, large enough that requests overlap when a test wants them to.
FAST_CONFIG = SimConfig(
    ttft_base_ms=1.0, ttft_per_prompt_token_ms=0.0, itl_ms=1.0, itl_batch_factor=0.0, output_tokens=4
)


# Loop turns for a woken consumer to take its tokens: a few hops through async generators and task wake-ups.
_SETTLING_TURNS = 5


class HeldSleep:
    """A sleep that lets the first ``free_calls`` through at once and holds every later one until the test lets
    the oldest through (``step``) or all of them from then on (``release``), so a test can look at a worker while
    its requests are in flight."""

    def __init__(self, free_calls: int = 0) -> None:
        self._free_calls = free_calls
        self._pending: deque[asyncio.Future[None]] = deque()
        self._released = False

    @property
    def held(self) -> int:
        return len(self._pending)

    async def __call__(self, seconds: float) -> None:
        if self._free_calls > 0:
            self._free_calls -= 1
            return
        if self._released:
            await asyncio.sleep(0)
            return
        pending = asyncio.get_running_loop().create_future()
        self._pending.append(pending)
        await pending

    def step(self) -> None:
        pending = self._pending.popleft()
        if not pending.done():
            pending.set_result(None)

    def release(self) -> None:
        self._released = True
        while self._pending:
            self.step()


class VirtualTime:
    """A clock and a sleep for a worker whose only sleeper is its engine loop (``ttft_base_ms`` 0, or one request
    at a time): sleeping moves the clock on by exactly the time asked, so latencies come out exact. The clock moves
    only after the tasks the last step woke have had their turn, so they see the time they were woken at."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        for _ in range(_SETTLING_TURNS):
            await asyncio.sleep(0)
        self.now += seconds


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


def assert_nothing_held(worker: SimWorker) -> None:
    scheduler = worker.scheduler
    assert (scheduler.num_running, scheduler.num_waiting, scheduler.kv_cache.usage) == (0, 0, 0.0)


@asynccontextmanager
async def served(worker: SimWorker) -> AsyncIterator[str]:
    """The worker behind the production runner on a free loopback port; yields its base URL."""
    async with listening([WorkerBinding(worker, "127.0.0.1", 0)], drain_seconds=0.5) as (listening_worker,):
        yield listening_worker.url


async def read_sse(response: aiohttp.ClientResponse) -> list[Any]:
    """The data of every server-sent event, JSON-decoded except the literal ``[DONE]``."""
    return sse_events(await response.read())
