"""The counters the exactness run reads, each from its own source and none through the gateway's own code.

- Redis, raw: the tenant's token counter is the hash ``tokenlabs:{tokens:<tenant>}:<seconds>`` with fields ``i``
  (the window index) and ``n`` (tokens used in it), as ``tokenlabs/quota/redis_store.py`` documents the layout;
  it counts for a window only while ``i`` is that window's index, ``floor(Redis TIME / seconds)``.
- The workers' ``/metrics``: ``vllm:prompt_tokens_total`` and ``vllm:generation_tokens_total`` of every worker.
- Envoy's admin ``/clusters``: ``rq_total`` per host of a cluster (for extproc, one per ext_proc stream).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import redis.asyncio as redis
from prometheus_client.parser import text_string_to_metric_families

MINUTE = 60
DAY = 86_400
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=5)


def counter_key(tenant: str, seconds: int) -> str:
    return f"tokenlabs:{{tokens:{tenant}}}:{seconds}"


@dataclass(frozen=True)
class Counter:
    index: int | None  # the window the stored count belongs to; None when there is no hash
    used: int

    def in_window(self, index: int) -> int:
        """Tokens counted in window ``index``: a count stored for another window is 0 for this one."""
        return self.used if self.index == index else 0


async def read_counter(client: redis.Redis, tenant: str, seconds: int) -> Counter:
    index, used = await client.hmget(counter_key(tenant, seconds), ["i", "n"])
    return Counter(None if index is None else int(index), int(used or 0))


async def redis_now(client: redis.Redis) -> float:
    seconds, microseconds = await client.time()
    return float(seconds) + microseconds / 1e6


def window_index(now: float, seconds: int) -> int:
    return math.floor(now / seconds)


def headroom_wait(now: float, needed_s: float, seconds: int = MINUTE) -> float:
    """How long to wait so that at least ``needed_s`` of the current window is left: 0 when it already is, else
    until just after the next window starts."""
    left = (window_index(now, seconds) + 1) * seconds - now
    return 0.0 if left >= needed_s else left + 0.1


async def sample_peak(client: redis.Redis, tenant: str, index: int, stop: asyncio.Event, every_s: float) -> list[int]:
    """The minute counter of window ``index``, read every ``every_s`` until ``stop`` is set (and once more)."""
    samples = []
    while True:
        stopping = stop.is_set()
        samples.append((await read_counter(client, tenant, MINUTE)).in_window(index))
        if stopping:
            return samples
        await asyncio.sleep(every_s)


async def settled(client: redis.Redis, tenant: str, quiet_s: float, timeout_s: float) -> tuple[Counter, Counter]:
    """The minute and day counters once neither has changed for ``quiet_s`` (charges are written after each stream
    ends, off the request path), or as they are after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last = (await read_counter(client, tenant, MINUTE), await read_counter(client, tenant, DAY))
    quiet_since = loop.time()
    while loop.time() - quiet_since < quiet_s and loop.time() < deadline:
        await asyncio.sleep(0.1)
        now = (await read_counter(client, tenant, MINUTE), await read_counter(client, tenant, DAY))
        if now != last:
            last, quiet_since = now, loop.time()
    return last


@dataclass(frozen=True)
class WorkerTokens:
    prompt: int
    generation: int

    def __sub__(self, other: WorkerTokens) -> WorkerTokens:
        return WorkerTokens(self.prompt - other.prompt, self.generation - other.generation)


def worker_tokens_of(text: str) -> WorkerTokens:
    """The prompt and generation token counters of one worker's Prometheus text."""
    totals = {"vllm:prompt_tokens_total": 0.0, "vllm:generation_tokens_total": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return WorkerTokens(int(totals["vllm:prompt_tokens_total"]), int(totals["vllm:generation_tokens_total"]))


async def worker_tokens(urls: Sequence[str]) -> WorkerTokens:
    """Summed over the workers at ``urls``."""
    prompt = generation = 0
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session:
        for url in urls:
            async with session.get(url) as response:
                counted = worker_tokens_of(await response.text())
            prompt, generation = prompt + counted.prompt, generation + counted.generation
    return WorkerTokens(prompt, generation)


def host_requests_of(text: str, cluster: str) -> dict[str, int]:
    """``rq_total`` per host of ``cluster`` from Envoy's ``/clusters`` text (``<cluster>::<host>::rq_total::<n>``)."""
    counts = {}
    for line in text.splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == cluster and parts[2] == "rq_total":
            counts[parts[1]] = int(parts[3])
    return counts


async def host_requests(admin_url: str, cluster: str) -> dict[str, int]:
    async with (
        aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session,
        session.get(f"{admin_url}/clusters") as response,
    ):
        return host_requests_of(await response.text(), cluster)
