"""wrk runs against Envoy targets, round robin: the preflight, one loaded run with CPU sampling, one round.

Shared by the gateway benchmark and the authz benchmark's Envoy part. Every run sends the same small
non-streaming chat request (``stack_config.chat_body``) with one API key; CPU time per watched process tree is
sampled from /proc inside the run, away from connection set-up and the last requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TypeVar

import aiohttp

from bench import cpu, wrk
from bench.report import Measurement
from bench.stack_config import chat_body
from bench.stages import Target

CONNECTIONS = (16, 1)
# Not measured: opens the gRPC streams and connection pools before the first timed run.
WARMUP_S = 1.0
# Lets the previous run's last requests drain before the next target starts.
SETTLE_S = 0.5
BODY = chat_body()
T = TypeVar("T")


async def preflight(target: Target, api_key: str) -> None:
    """One request by hand: a target that answers anything but a chat completion would make the numbers lie."""
    headers = {"authorization": f"Bearer {api_key}", "content-type": "application/json"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.post(target.url, data=BODY, headers=headers) as response,
    ):
        text = await response.text()
    if response.status != 200 or '"choices"' not in text:
        raise RuntimeError(f"{target.name}: preflight got {response.status}: {text[:500]}")


async def measure(
    target: Target, connections: int, duration_s: float, plugins: Mapping[str, int], api_key: str
) -> tuple[wrk.WrkResult, dict[str, float]]:
    process = await wrk.start(target.url, connections, duration_s, BODY, api_key)
    try:
        # CPU is sampled inside the run, away from connection set-up and the last requests.
        margin = min(0.5, duration_s / 6)
        watched = {**plugins, "envoy": target.envoy_pid, "wrk": process.pid}
        await asyncio.sleep(margin)
        before = cpu.snapshot(watched, own="bench")
        await asyncio.sleep(duration_s - 2 * margin)
        after = cpu.snapshot(watched, own="bench")
        result = await wrk.finish(process, duration_s)
    finally:
        await wrk.stop(process)
    return result, cpu.shares(before, after)


async def warm_up(targets: Sequence[Target], plugins: Mapping[str, int], api_key: str) -> None:
    for target in targets:
        await preflight(target, api_key)
        await measure(target, CONNECTIONS[0], WARMUP_S, plugins, api_key)


async def run_round(
    index: int, rounds: int, targets: Sequence[Target], duration_s: float, plugins: Mapping[str, int], api_key: str
) -> list[Measurement]:
    """Round ``index`` (0-based): c16 then c1, each over every target, the order rotated by one each round so that
    no target always runs first (or right after the costliest one)."""
    measurements = []
    for connections in CONNECTIONS:
        for target in rotated(targets, index):
            await asyncio.sleep(SETTLE_S)
            result, shares = await measure(target, connections, duration_s, plugins, api_key)
            measurement = Measurement(index + 1, target.name, connections, result, shares)
            measurements.append(measurement)
            print(progress(measurement, rounds), flush=True)
    return measurements


def rotated(items: Sequence[T], index: int) -> list[T]:
    """``items`` rotated left by ``index``: round ``index``'s order, so that no item always runs first."""
    shift = index % len(items)
    return [*items[shift:], *items[:shift]]


def progress(m: Measurement, rounds: int) -> str:
    return (
        f"round {m.round}/{rounds} c={m.connections:<2} {m.stage:<14} {m.wrk.rps:8,.0f} req/s  "
        f"p50 {m.wrk.p50_ms:6.2f} ms  p99 {m.wrk.p99_ms:6.2f} ms  errors {m.wrk.errors}"
    )
