"""One routing run: a policy's picker (the real epp code, in this process, scraping the real simulated workers)
and an open-loop Poisson client streaming chat completions straight to the picked endpoint.

Time to first token is measured from the request's scheduled arrival, so time spent picking (or a client that
fell behind its schedule) counts against the policy, as it would in a real gateway.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType

import aiohttp
import orjson

from bench.epp_pool import MODEL
from bench.epp_workload import Arrival
from epp.metrics.scraper import Scraper
from epp.metrics.snapshot import MetricsBoard
from epp.picking import EndpointPicker
from epp.pools.directory import Pool, PoolDirectory
from epp.pools.static import StaticEndpoints
from epp.request import prompt_text
from epp.scheduling.framework import Scheduler
from epp.scheduling.interfaces import SchedulingRequest
from epp.scheduling.registry import build_profile
from tokenlabs.picker_settings import EppSettings, SaturationMode, SaturationSettings
from tokenlabs.telemetry import Telemetry


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request; ``at_s`` is its scheduled arrival (offset from the run's start)."""

    at_s: float
    ttft_s: float | None  # None: failed
    e2e_s: float | None
    output_tokens: int
    decision_s: float
    endpoint: str


def in_process_picker(
    policy: str, endpoints: Sequence[str], board: MetricsBoard, scrape_interval_s: float = 0.05, seed: int = 11
) -> tuple[EndpointPicker, Pool, EppSettings]:
    """The picker of the ``policy`` profile over one static pool serving ``MODEL``, never shedding or queueing."""
    settings = EppSettings(
        host="127.0.0.1",
        grpc_port=1,
        metrics_port=1,
        drain_seconds=1.0,
        scrape_interval_s=scrape_interval_s,
        saturation=SaturationSettings(mode=SaturationMode.OFF),
    )
    pool = Pool("bench", StaticEndpoints(tuple(endpoints)))
    pools = PoolDirectory(MappingProxyType({"bench": pool}), MappingProxyType({MODEL: pool}))
    scheduler = Scheduler(build_profile({"profile": policy}), settings.fallbacks, random.Random(seed))
    return EndpointPicker(pools, board, scheduler, settings), pool, settings


def picker_for(policy: str, endpoints: Sequence[str], scrape_interval_s: float) -> tuple[EndpointPicker, Scraper]:
    board = MetricsBoard()
    picker, pool, settings = in_process_picker(policy, endpoints, board, scrape_interval_s)
    scraper = Scraper(
        [pool],
        board,
        Telemetry.create(f"bench-{policy}"),
        interval_s=scrape_interval_s,
        timeout_s=settings.scrape_timeout_s,
        staleness_s=settings.metrics_staleness_s,
    )
    return picker, scraper


async def run_load(
    policy: str, endpoints: Sequence[str], arrivals: Sequence[Arrival], scrape_interval_s: float, timeout_s: float
) -> list[Outcome]:
    picker, scraper = picker_for(policy, endpoints, scrape_interval_s)
    await scraper.start()
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as session:
            start = time.monotonic()
            tasks = []
            for arrival in arrivals:
                delay = start + arrival.at_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(_one(picker, session, arrival, start + arrival.at_s)))
            return list(await asyncio.gather(*tasks))
    finally:
        await scraper.stop()


async def _one(picker: EndpointPicker, session: aiohttp.ClientSession, arrival: Arrival, due: float) -> Outcome:
    body = {
        "model": MODEL,
        "messages": list(arrival.messages),
        "max_tokens": arrival.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    raw = orjson.dumps(body)
    picked_at = time.perf_counter()
    pick = await picker.choose(SchedulingRequest(MODEL, prompt_text(body)))
    decision_s = time.perf_counter() - picked_at
    endpoint = pick.decision.chosen.address
    first: float | None = None
    tokens = 0
    try:
        async with session.post(
            f"http://{endpoint}/v1/chat/completions", data=raw, headers={"content-type": "application/json"}
        ) as response:
            if response.status != 200:
                return Outcome(arrival.at_s, None, None, 0, decision_s, endpoint)
            async for line in response.content:
                if not line.startswith(b"data: {"):
                    continue
                if first is None and b'"content"' in line:
                    first = time.monotonic()
                if b'"usage"' in line:
                    usage = orjson.loads(line[6:]).get("usage") or {}
                    tokens = int(usage.get("completion_tokens", 0))
    except (aiohttp.ClientError, TimeoutError):
        return Outcome(arrival.at_s, None, None, 0, decision_s, endpoint)
    done = time.monotonic()
    return Outcome(arrival.at_s, None if first is None else first - due, done - due, tokens, decision_s, endpoint)
