"""What many simulated workers in one process cost in CPU: a measurement to run by hand, not a test.

Starts ``python -m engine.sim`` with ``--workers`` workers on free loopback ports, measures the process's CPU while
idle, then drives an open-loop arrival of streamed chat completions at ``--rate`` requests per second in total,
spread round-robin over the workers, and measures it again after a warm-up. CPU is the worker process's user +
system time from /proc divided by wall time (1.0 = one core busy). The load generator runs in this process, so its
own cost is not in the figure.

    .venv/bin/python -m bench.sim_cpu --workers 100 --rate 50 --tokens 64
"""

import argparse
import asyncio
import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field

import aiohttp
import orjson

from bench.cpu import process_ticks
from tokenlabs.devstack import free_ports

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


@dataclass
class LoadResult:
    completed: int = 0
    failed: int = 0
    usage_mismatches: int = 0
    ttft_s: list[float] = field(default_factory=list)
    chunk_gap_s: list[float] = field(default_factory=list)


async def start_workers(ports: list[int], sim_options: list[str]) -> asyncio.subprocess.Process:
    argv = [sys.executable, "-m", "engine.sim", *sim_options]
    for port in ports:
        argv += ["--worker", f"sim=127.0.0.1:{port}"]
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    for _ in ports:
        line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
        if not line.startswith(b"sim worker ready"):
            raise RuntimeError(f"worker process said {line!r}")
    return process


async def cpu_over(pid: int, seconds: float) -> float:
    """Cores the process kept busy over the next ``seconds``."""
    ticks, started = process_ticks(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return (process_ticks(pid) - ticks) / _TICKS_PER_SECOND / (time.monotonic() - started)


async def stream_one(http: aiohttp.ClientSession, url: str, result: LoadResult) -> None:
    body = {
        "model": "sim",
        "messages": [{"role": "user", "content": "Tell me a story about a simulated GPU."}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.monotonic()
    last, chunks, usage = started, 0, None
    try:
        async with http.post(url, json=body) as response:
            async for line in response.content:
                if not line.startswith(b"data: {"):
                    continue
                event = orjson.loads(line[6:])
                if event.get("usage"):
                    usage = event["usage"]["completion_tokens"]
                elif event["choices"][0]["delta"].get("content"):
                    now = time.monotonic()
                    (result.chunk_gap_s if chunks else result.ttft_s).append(now - (last if chunks else started))
                    last, chunks = now, chunks + 1
    except aiohttp.ClientError:
        result.failed += 1
        return
    result.completed += 1
    result.usage_mismatches += usage != chunks


async def drive(urls: list[str], rate: float, seconds: float, result: LoadResult) -> None:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        tasks = set()
        started = time.monotonic()
        for index in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
            task = asyncio.create_task(stream_one(http, urls[index % len(urls)], result))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)


def percentile(values: list[float], share: float) -> float:
    return sorted(values)[min(len(values) - 1, int(share * len(values)))] if values else float("nan")


async def measure(args: argparse.Namespace) -> None:
    ports = free_ports(args.workers)
    process = await start_workers(ports, args.sim_option)
    try:
        idle = await cpu_over(process.pid, args.idle_seconds)
        result = LoadResult()
        urls = [f"http://127.0.0.1:{port}/v1/chat/completions" for port in ports]
        own_before = resource.getrusage(resource.RUSAGE_SELF)
        load = asyncio.create_task(drive(urls, args.rate, args.warmup + args.seconds + 1, result))
        await asyncio.sleep(args.warmup)
        busy = await cpu_over(process.pid, args.seconds)
        await load
        own_after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        process.terminate()
        await process.wait()
    own_cpu = own_after.ru_utime + own_after.ru_stime - own_before.ru_utime - own_before.ru_stime
    print(f"workers {args.workers}, {args.rate} req/s, options {' '.join(args.sim_option) or '(defaults)'}")
    print(f"worker process CPU: idle {idle:.3f} cores, under load {busy:.3f} cores")
    print(f"load generator CPU (whole run): {own_cpu:.1f} s")
    print(
        f"requests: {result.completed} completed, {result.failed} failed, "
        f"{result.usage_mismatches} with usage != streamed tokens"
    )
    print(
        f"client-side TTFT p50 {percentile(result.ttft_s, 0.5) * 1000:.1f} ms p99 "
        f"{percentile(result.ttft_s, 0.99) * 1000:.1f} ms; chunk gap p50 "
        f"{statistics.median(result.chunk_gap_s or [float('nan')]) * 1000:.2f} ms p99 "
        f"{percentile(result.chunk_gap_s, 0.99) * 1000:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second, all workers together")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window under load")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument(
        "--sim-option",
        action="append",
        default=[],
        help="passed to the worker process, e.g. --sim-option=--output-tokens=64 (repeat)",
    )
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
