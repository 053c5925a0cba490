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

import asyncio
import json
import signal
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import wrk
from bench.envoy_rounds import BODY, run_round, warm_up
from bench.machine import machine_facts
from bench.options import benchmark_parser, rounds_and_duration
from bench.report import Measurement, format_summary, summarise
from bench.stack_config import MODEL, OUTPUT_TOKENS, PRO_KEY, REPO, ZERO_LATENCY_SIM, write_config
from bench.stages import CHAT_PATH, STAGES, Target, grpc_calls_per_request, make_targets
from tokenlabs.devstack import Child, Stack, StackOptions
from tokenlabs.envoy_config import render_bootstrap
from tokenlabs.settings import load

DEFAULT_JSON = REPO / "bench" / "results" / "gateway.json"
PLUGIN_CHILDREN = ("authz", "extproc", "epp", "workers")


@dataclass(frozen=True)
class Plan:
    stages: tuple[str, ...]
    rounds: int
    duration_s: float
    envoy_concurrency: int
    json_path: Path


def parse_args(argv: Sequence[str] | None) -> Plan:
    parser = benchmark_parser(
        "python -m bench.gateway",
        __doc__,
        DEFAULT_JSON,
        rounds_help="round-robin passes over all targets",
        duration_help="seconds per wrk run",
        quick_help="1 round of 3 s runs",
    )
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
    rounds, duration = rounds_and_duration(
        parser, args, quick=(1, 3.0), min_duration_s=2, why=" (the CPU window skips the ramp at both ends)"
    )
    return Plan(stages, rounds, duration, args.envoy_concurrency, args.json)


def conditions(plan: Plan) -> dict[str, Any]:
    return {
        **machine_facts(),
        "envoy_concurrency": plan.envoy_concurrency,
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


async def run_rounds(plan: Plan, targets: list[Target], plugins: Mapping[str, int]) -> list[Measurement]:
    await warm_up(targets, plugins, PRO_KEY)
    measurements = []
    for index in range(plan.rounds):
        measurements += await run_round(index, plan.rounds, targets, plan.duration_s, plugins, PRO_KEY)
    return measurements


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
