"""Decision cost of the picker at a given pool size: ``EndpointPicker.choose`` on synthetic fresh metrics, the
workload's prompts (so the prefix index fills as in a real run), no network."""

from __future__ import annotations

import random
import time

from bench.epp_driver import in_process_picker
from bench.epp_pool import MODEL
from bench.epp_workload import Workload
from epp.metrics.snapshot import CacheConfig, EndpointMetrics, MetricsBoard
from epp.request import prompt_text
from epp.scheduling.interfaces import SchedulingRequest

CACHE = CacheConfig(block_size=16, num_blocks=1024, prefix_caching=True)


def _publish_random(board: MetricsBoard, endpoints: tuple[str, ...], rng: random.Random) -> None:
    now = time.monotonic()
    for endpoint in endpoints:
        board.publish(
            endpoint,
            EndpointMetrics(
                scraped_at=now,
                waiting=rng.randrange(6),
                running=rng.randrange(17),
                kv_cache_usage=rng.random(),
                cache=CACHE,
            ),
        )


async def decision_latency(policy: str, size: int, workload: Workload, decisions: int, seed: int = 5) -> list[float]:
    """Seconds per ``choose`` call, after a warm-up that fills the prefix index."""
    rng = random.Random(seed)
    endpoints = tuple(f"10.0.{index // 250}.{index % 250}:8000" for index in range(size))
    board = MetricsBoard()
    picker, _, _ = in_process_picker(policy, endpoints, board, seed=seed)
    arrivals = workload.arrivals(rate=1000.0, duration_s=(decisions + 200) / 1000.0 + 1, seed=seed)
    requests = [
        SchedulingRequest(MODEL, prompt_text({"messages": list(arrival.messages)}))
        for arrival in arrivals[: decisions + 200]
    ]
    timings = []
    for index, request in enumerate(requests):
        if index % 50 == 0:
            _publish_random(board, endpoints, rng)
        started = time.perf_counter()
        await picker.choose(request)
        if index >= 200:
            timings.append(time.perf_counter() - started)
    return timings
