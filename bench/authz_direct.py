"""Direct gRPC runs: the real authz server as a child process, its memory, and rounds of the load generator.

The server is ``tokenlabs serve authz --config ...`` supervised by ``tokenlabs.devstack`` (ready on gRPC health
SERVING, stopped with SIGTERM, killed if it lingers, dies with the bench). Its start-up time is measured to
SERVING; memory is VmRSS/VmHWM from /proc. Each round is one load-generator process (``bench.authz_load``) that
runs every (method, concurrency) setting in turn, the order rotated by one each round; results are medians over
rounds, and ``authz`` is compared with the no-op ``health`` call round by round.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenlabs.devstack import Stack, StackOptions
from tokenlabs.settings import Settings

METHODS = ("authz", "health")
# The load generator's numbers that are medians over rounds in the summary.
MEDIAN_KEYS = (
    "calls_per_s",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "server_cpu_us_per_call",
    "server_cores",
    "server_main_thread_cores",
    "client_cpu_us_per_call",
    "machine_idle_percent",
)
# Start-up, preflight and ramp of one load-generator process on top of its measured runs, and then some.
LOAD_OVERHEAD_S = 60.0


def authz_stack(settings: Settings, argv: Sequence[str] | None = None) -> Stack:
    """A stack holding only the authz server; ``argv`` replaces its command line (the profiled server)."""
    assert settings.source is not None
    stack = Stack(settings, StackOptions(settings.source, echo=lambda line: None))
    server = next(child for child in stack.children if child.name == "authz")
    if argv is not None:
        server.argv = argv
    stack.children[:] = [server]
    return stack


def server_pid(stack: Stack) -> int:
    process = stack.children[0].process
    assert process is not None, "the server has not started"
    return process.pid


async def start(stack: Stack) -> float:
    """Start the server; seconds until gRPC health said SERVING (polled every 0.1 s)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    await stack.start()
    return loop.time() - started


def memory(pid: int) -> dict[str, int]:
    """Resident set now and its peak, in bytes."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_bytes": int(fields["VmRSS"].split()[0]) * 1024, "hwm_bytes": int(fields["VmHWM"].split()[0]) * 1024}


async def demo_baseline(settings: Settings) -> dict[str, float]:
    """Start-up time and memory of the server with the two demo tenants: what 100,000 tenants are compared with."""
    stack = authz_stack(settings)
    try:
        ready_s = await start(stack)
        return {"ready_s": round(ready_s, 2), **memory(server_pid(stack))}
    finally:
        await stack.stop()


def settings_for(concurrencies: Sequence[int]) -> list[str]:
    """Every (method, concurrency) pair as the load generator's RUN arguments, each concurrency's pair adjacent."""
    return [f"{method}:{concurrency}" for concurrency in concurrencies for method in METHODS]


async def load_round(
    address: str, pid: int, tenants: int, duration_s: float, runs: Sequence[str], index: int, label: str
) -> list[dict[str, Any]]:
    """Round ``index`` (0-based) of direct runs in one load-generator process; each result gets its round, and
    ``label`` starts its progress lines."""
    shift = index % len(runs)
    order = [*runs[shift:], *runs[:shift]]
    argv = ["-m", "bench.authz_load", address, str(pid), str(tenants), f"{duration_s:g}", *order]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    results: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(len(order) * duration_s + LOAD_OVERHEAD_S):
            assert process.stdout is not None and process.stderr is not None
            async for line in process.stdout:
                result = {"round": index + 1, **json.loads(line)}
                results.append(result)
                print(f"{label} {progress(result)}", flush=True)
            errors = (await process.stderr.read()).decode("utf-8", "replace")
            await process.wait()
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    if process.returncode != 0 or len(results) != len(order):
        raise RuntimeError(f"load generator failed (exit {process.returncode}):\n{errors[-3000:]}")
    return results


def progress(r: dict[str, Any]) -> str:
    return (
        f"direct c={r['concurrency']:<3} {r['method']:<7} {r['calls_per_s']:8,.0f} calls/s"
        f"  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  server {r['server_cpu_us_per_call']:5.0f} µs/call"
        f"  errors {r['errors']}"
    )


def summarise(results: Sequence[dict[str, Any]], concurrencies: Sequence[int]) -> dict[str, Any]:
    """Medians over rounds per method and concurrency (``c1``, ``c8``...), and per-round ratios authz / health."""
    summary: dict[str, Any] = {}
    for method in METHODS:
        summary[method] = {}
        for concurrency in concurrencies:
            runs = [r for r in results if r["method"] == method and r["concurrency"] == concurrency]
            numbers = {key: round(statistics.median(r[key] for r in runs), 3) for key in MEDIAN_KEYS}
            numbers["errors"] = sum(r["errors"] for r in runs)
            summary[method][f"c{concurrency}"] = numbers
    ratios: dict[str, Any] = {}
    for concurrency in concurrencies:
        pairs = _pairs(results, concurrency)
        ratios[f"c{concurrency}"] = {
            key: ratio_stats([a[key] / h[key] for a, h in pairs if h[key]])
            for key in ("calls_per_s", "server_cpu_us_per_call")
        }
    summary["authz_vs_health"] = ratios
    return summary


def _pairs(results: Sequence[dict[str, Any]], concurrency: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for r in results:
        if r["concurrency"] == concurrency:
            by_round.setdefault(r["round"], {})[r["method"]] = r
    return [(runs["authz"], runs["health"]) for runs in by_round.values() if len(runs) == len(METHODS)]


def ratio_stats(ratios: Sequence[float]) -> dict[str, float | None]:
    """Median, min and max of per-round ratios (None when no round had both)."""
    if not ratios:
        return {"median": None, "min": None, "max": None}
    return {"median": round(statistics.median(ratios), 2), "min": round(min(ratios), 2), "max": round(max(ratios), 2)}
