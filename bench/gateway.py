"""Gateway benchmark: what the tokenlabs filter chain costs over plain Envoy, and which process spends it.

The same small non-streaming chat request goes, with wrk, through plain Envoy to one simulated worker, through
cuts of the gateway's filter chain (ext_authz; ext_authz + extproc) and through the full local stack (ext_authz,
extproc, epp, ORIGINAL_DST), with the workers' latency at zero so the gateway's own cost dominates. Targets run
one after another, round robin, each at 16 connections and at 1; CPU time per process is sampled from /proc
while each run is under load.

    python -m bench.gateway            # 3 rounds x 10 s, writes bench/results/gateway.json
    python -m bench.gateway --quick    # 1 round x 3 s
Needs wrk (apt-get install -y wrk). Exit status 1 when any response was not a 200.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench import cpu, wrk
from bench.report import Measurement, format_summary, summarise
from bench.stack_config import MODEL, OUTPUT_TOKENS, PRO_KEY, REPO, ZERO_LATENCY_SIM, chat_body, write_config
from bench.stages import CHAT_PATH, STAGES, Target, grpc_calls_per_request, make_targets
from tokenlabs.devstack import Child, Stack, StackOptions
from tokenlabs.envoy_config import find_envoy, render_bootstrap
from tokenlabs.settings import load

DEFAULT_JSON = REPO / "bench" / "results" / "gateway.json"
CONNECTIONS = (16, 1)
PLUGIN_CHILDREN = ("authz", "extproc", "epp", "workers")
# Not measured: opens the gRPC streams and connection pools before the first timed run.
WARMUP_S = 1.0
# Lets the previous run's last requests drain before the next target starts.
SETTLE_S = 0.5
BODY = chat_body()


@dataclass(frozen=True)
class Plan:
    stages: tuple[str, ...]
    rounds: int
    duration_s: float
    envoy_concurrency: int
    json_path: Path


def parse_args(argv: Sequence[str] | None) -> Plan:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="round-robin passes over all targets (default: 3)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (default: 10)")
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s runs: a check, not a measurement")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default: {DEFAULT_JSON})")
    parser.add_argument("--envoy-concurrency", type=int, default=2, help="worker threads of every Envoy (default: 2)")
    parser.add_argument(
        "--stages",
        default=",".join(STAGES),
        help=f"comma-separated targets, from: {', '.join(STAGES)} (default: all)",
    )
    args = parser.parse_args(argv)
    stages = tuple(name.strip() for name in args.stages.split(",") if name.strip())
    unknown = sorted(set(stages) - set(STAGES))
    if unknown or not stages:
        parser.error(f"--stages: unknown {unknown}; choose from {', '.join(STAGES)}")
    if args.rounds < 1 or args.duration < 2:
        parser.error("--rounds must be >= 1 and --duration >= 2 (the CPU window skips the ramp at both ends)")
    rounds, duration = (1, 3.0) if args.quick else (args.rounds, args.duration)
    return Plan(stages, rounds, duration, args.envoy_concurrency, args.json)


def conditions(plan: Plan) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "loadavg_at_start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "envoy_version": _envoy_version(),
        "envoy_concurrency": plan.envoy_concurrency,
        "wrk_version": wrk.version(),
        "python": platform.python_version(),
        "rounds": plan.rounds,
        "duration_s": plan.duration_s,
        "connections": {"c16": "16 connections, 2 threads", "c1": "1 connection, 1 thread"},
        "path": CHAT_PATH,
        "model": MODEL,
        "body_bytes": len(BODY.encode()),
        "output_tokens": OUTPUT_TOKENS,
        "sim": ZERO_LATENCY_SIM,
        "order": "per round: c16 then c1, each over all targets; target order rotates by one each round",
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _envoy_version() -> str:
    # "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
    text = subprocess.run([find_envoy(), "--version"], capture_output=True, text=True, check=True).stdout
    parts = text.split("version:", 1)[-1].strip().split("/")
    return parts[1] if len(parts) > 1 else text.strip()


async def preflight(target: Target) -> None:
    """One request by hand: a target that answers anything but a chat completion would make the numbers lie."""
    headers = {"authorization": f"Bearer {PRO_KEY}", "content-type": "application/json"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.post(target.url, data=BODY, headers=headers) as response,
    ):
        text = await response.text()
    if response.status != 200 or '"choices"' not in text:
        raise RuntimeError(f"{target.name}: preflight got {response.status}: {text[:500]}")


async def measure(
    target: Target, connections: int, duration_s: float, plugins: Mapping[str, int]
) -> tuple[wrk.WrkResult, dict[str, float]]:
    process = await wrk.start(target.url, connections, duration_s, BODY, PRO_KEY)
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


async def run_rounds(plan: Plan, targets: list[Target], plugins: Mapping[str, int]) -> list[Measurement]:
    for target in targets:
        await preflight(target)
        await measure(target, CONNECTIONS[0], WARMUP_S, plugins)
    measurements = []
    for index in range(plan.rounds):
        # Rotating the order keeps any one target from always running first (or right after the costliest one).
        shift = index % len(targets)
        order = targets[shift:] + targets[:shift]
        for connections in CONNECTIONS:
            for target in order:
                await asyncio.sleep(SETTLE_S)
                result, shares = await measure(target, connections, plan.duration_s, plugins)
                measurement = Measurement(index + 1, target.name, connections, result, shares)
                measurements.append(measurement)
                print(_progress(measurement, plan.rounds), flush=True)
    return measurements


def _progress(m: Measurement, rounds: int) -> str:
    return (
        f"round {m.round}/{rounds} c={m.connections:<2} {m.stage:<14} {m.wrk.rps:8,.0f} req/s  "
        f"p50 {m.wrk.p50_ms:6.2f} ms  p99 {m.wrk.p99_ms:6.2f} ms  errors {m.wrk.errors}"
    )


def _child(stack: Stack, name: str) -> Child:
    return next(child for child in stack.children if child.name == name)


async def bench(plan: Plan) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    # SIGTERM takes the same way out as Ctrl-C: cancel, so that every `finally` stops what it started.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with tempfile.TemporaryDirectory(prefix="tokenlabs-bench-") as tmp:
        workdir = Path(tmp)
        settings = load(write_config(workdir))
        assert settings.source is not None
        # Children's output stays in their tails, which Stack shows if one of them fails.
        options = StackOptions(settings.source, envoy_concurrency=plan.envoy_concurrency, echo=lambda line: None)
        stack = Stack(settings, options)
        full_envoy = _child(stack, "envoy")
        targets = make_targets(
            plan.stages, settings, full_envoy, render_bootstrap(settings), workdir, plan.envoy_concurrency
        )
        stack.children.extend(target.envoy for target in targets if target.envoy is not full_envoy)
        facts = conditions(plan)
        try:
            await stack.start()
            plugins = {name: _pid(_child(stack, name)) for name in PLUGIN_CHILDREN}
            measurements = await run_rounds(plan, targets, plugins)
            calls = {target.name: await grpc_calls_per_request(target) for target in targets}
        finally:
            await stack.stop()
    summary = summarise(measurements, plan.stages, calls)
    print("\n" + format_summary(summary, facts), flush=True)
    return {**summary, "conditions": facts, "rounds": [m.raw() for m in measurements]}


def _pid(child: Child) -> int:
    assert child.process is not None
    return child.process.pid


def main(argv: Sequence[str] | None = None) -> int:
    plan = parse_args(argv)
    try:
        wrk.binary()  # fail before starting anything
    except FileNotFoundError as error:
        print(f"gateway benchmark: {error}", file=sys.stderr)
        return 2
    try:
        document = asyncio.run(bench(plan))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("gateway benchmark: interrupted; everything it started has been stopped", file=sys.stderr)
        return 130
    except RuntimeError as error:  # a child that failed to start or died, a failed preflight, a failed wrk run
        print(f"gateway benchmark failed: {error}", file=sys.stderr)
        return 1
    plan.json_path.parent.mkdir(parents=True, exist_ok=True)
    plan.json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {plan.json_path}")
    errors = sum(numbers["errors"] for name, numbers in document.items() if name in plan.stages)
    if errors:
        print(f"gateway benchmark: {errors} responses were not 200", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
