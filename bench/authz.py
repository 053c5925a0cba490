"""authz benchmark: checks/s and latency of the authz server with many tenants, direct and through Envoy.

With N generated tenants (100,000 by default; Authorino-format Secrets, the shipped tiers in turn, request limits
far above what a run can use but configured, so every check makes its memory-store round trip):

- memory and load time: the server's VmRSS and start-up time to gRPC SERVING with N tenants against the same with
  the two demo tenants, plus what the snapshot itself retains per tenant (tracemalloc, in this process);
- direct gRPC: ``bench.authz_load`` drives the real server (``tokenlabs serve authz``) with Check calls for keys
  drawn at random from the N, at 1, 8 and 64 calls in flight, each beside the no-op health call on the same
  server; latency as the client sees it, CPU time of the server per call from /proc;
- through Envoy: plain Envoy vs the authz-only chain with wrk at 16 connections and at 1, as ``bench.gateway``;
- where the time goes: a second server profiled with cProfile during one direct run at 64 in flight.

Each round runs the direct settings and then the Envoy targets, every order rotated by one per round; results are
medians over rounds and ratios are taken within a round.

    python -m bench.authz            # 3 rounds x 10 s, 100,000 tenants, writes bench/results/authz.json
    python -m bench.authz --quick    # 1 round x 1 s: a check, not a measurement
Needs wrk (apt-get install -y wrk). Exit status 1 when any call or request was not allowed / not a 200.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from authz.sources.directory import read_directory
from bench import wrk
from bench.authz_direct import authz_stack, demo_baseline, load_round, memory, server_pid, settings_for, start
from bench.authz_direct import summarise as summarise_direct
from bench.authz_envoy import STAGES, envoy_stack, summarise_envoy, workers_pid
from bench.authz_load import authz_requests
from bench.authz_profile import profile_run
from bench.authz_report import format_summary, targets
from bench.authz_tenants import bench_key, retained_bytes_per_tenant, write_tenants
from bench.envoy_rounds import BODY, run_round, warm_up
from bench.machine import machine_facts
from bench.options import benchmark_parser, rounds_and_duration
from bench.report import Measurement
from bench.stack_config import DEMO_TENANTS, REPO, UNLIMITED, write_config
from bench.stages import CHAT_PATH, grpc_calls_per_request
from tokenlabs.settings import Settings, load

DEFAULT_JSON = REPO / "bench" / "results" / "authz.json"
# c1 and c8: latency; c64: the most the server does (its single event-loop thread saturated).
CONCURRENCIES = (1, 8, 64)
RETAINED_SAMPLE = 5_000


@dataclass(frozen=True)
class Plan:
    tenants: int
    rounds: int
    duration_s: float
    envoy_concurrency: int
    json_path: Path


def parse_args(argv: Sequence[str] | None) -> Plan:
    parser = benchmark_parser(
        "python -m bench.authz",
        __doc__,
        DEFAULT_JSON,
        rounds_help="rounds over all settings and targets",
        duration_help="seconds per run",
        quick_help="1 round of 1 s runs",
    )
    parser.add_argument("--tenants", type=int, default=100_000, help="tenants loaded (default: 100000)")
    args = parser.parse_args(argv)
    if not 1 <= args.tenants < 10**8:
        parser.error("--tenants must be between 1 and 99,999,999")
    rounds, duration = rounds_and_duration(parser, args, quick=(1, 1.0), min_duration_s=1)
    return Plan(args.tenants, rounds, duration, args.envoy_concurrency, args.json)


def conditions(plan: Plan, tiers: Sequence[str]) -> dict[str, Any]:
    return {
        **machine_facts(),
        "tenants": plan.tenants,
        "tiers": list(tiers),
        "quota_store": f"memory://, {UNLIMITED:.0e} requests per minute and per day in every tier",
        "rounds": plan.rounds,
        "duration_s": plan.duration_s,
        "direct": {
            "concurrency": list(CONCURRENCIES),
            "client": "one grpc.aio process per round, one connection, generic unary_unary, pre-serialised "
            "requests, responses checked on their first bytes; latency measured in the client",
            "request_bytes": len(authz_requests(1)()),
            "baseline": "grpc.health.v1.Health/Check on the same server",
        },
        "envoy": {
            "stages": list(STAGES),
            "envoy_concurrency": plan.envoy_concurrency,
            "connections": {"c16": "16 connections, 2 threads", "c1": "1 connection, 1 thread"},
            "path": CHAT_PATH,
            "body_bytes": len(BODY.encode()),
        },
        "profile": f"cProfile of a second server, one {plan.duration_s:g} s direct run at c{CONCURRENCIES[-1]}",
        "order": "per round: direct settings in one client process, then Envoy targets at c16 then c1; every "
        "order rotates by one each round",
    }


@dataclass
class Measured:
    """What the rounds produced: the server's memory and start-up, the direct runs, the wrk runs, Envoy's counts."""

    memory: dict[str, Any] = field(default_factory=dict)
    direct: list[dict[str, Any]] = field(default_factory=list)
    envoy: list[Measurement] = field(default_factory=list)
    calls: dict[str, dict[str, float]] = field(default_factory=dict)


async def run_rounds(plan: Plan, settings: Settings, workdir: Path) -> Measured:
    """The server with the bench's tenants and the two Envoys, up for every round; all stopped on the way out."""
    measured = Measured()
    server = authz_stack(settings)
    envoys, envoy_targets = envoy_stack(settings, workdir, plan.envoy_concurrency)
    key = bench_key(plan.tenants // 2)  # wrk sends one key; the direct runs draw theirs from all tenants
    runs, address = settings_for(CONCURRENCIES), settings.authz.grpc_address
    try:
        measured.memory["ready_s"] = round(await start(server), 2)
        pid = server_pid(server)
        measured.memory |= memory(pid)
        await envoys.start()
        plugins = {"authz": pid, "workers": workers_pid(envoys)}
        await warm_up(envoy_targets, plugins, key)
        for index in range(plan.rounds):
            label = f"round {index + 1}/{plan.rounds}"
            measured.direct += await load_round(address, pid, plan.tenants, plan.duration_s, runs, index, label)
            measured.envoy += await run_round(index, plan.rounds, envoy_targets, plan.duration_s, plugins, key)
        measured.memory["after_runs"] = memory(pid)
        measured.calls = {target.name: await grpc_calls_per_request(target) for target in envoy_targets}
    finally:
        await envoys.stop()
        await server.stop()
    return measured


async def bench(plan: Plan) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    # SIGTERM takes the same way out as Ctrl-C: cancel, so that every `finally` stops what it started.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with tempfile.TemporaryDirectory(prefix="tokenlabs-bench-authz-") as tmp:
        workdir = Path(tmp)
        for name in ("tenants", "demo", "sample", "envoy"):
            (workdir / name).mkdir()
        config = write_config(workdir, workdir / "tenants")
        settings = load(config)
        tiers = tuple(settings.tiers)
        write_tenants(workdir / "tenants", plan.tenants, tiers)
        facts = conditions(plan, tiers)
        demo = await demo_baseline(load(write_config(workdir / "demo", DEMO_TENANTS)))
        measured = await run_rounds(plan, settings, workdir / "envoy")
        stats = workdir / "authz.prof"
        profile = await profile_run(settings, config, stats, plan.tenants, plan.duration_s, CONCURRENCIES[-1])
        retained = retained_bytes_per_tenant(workdir / "sample", min(plan.tenants, RETAINED_SAMPLE), tiers)
        demo_count = len(read_directory(DEMO_TENANTS, frozenset(tiers)))
    document: dict[str, Any] = {
        "tenants": tenant_costs(plan.tenants, demo_count, demo, measured.memory, retained),
        "direct": summarise_direct(measured.direct, CONCURRENCIES),
        "envoy": summarise_envoy(measured.envoy, measured.calls),
        "profile": profile,
    }
    document["targets"] = targets(document)
    document["conditions"] = facts
    document["rounds"] = {"direct": measured.direct, "envoy": [m.raw() for m in measured.envoy]}
    print("\n" + format_summary(document), flush=True)
    return document


def tenant_costs(
    count: int, demo_count: int, demo: dict[str, Any], loaded: dict[str, Any], retained: float
) -> dict[str, Any]:
    """Load time and bytes per tenant: the server with ``count`` tenants less the server with the demo tenants."""
    extra = max(1, count - demo_count)
    return {
        "count": count,
        "demo": {"count": demo_count, **demo},
        "loaded": loaded,
        "load_s": round(loaded["ready_s"] - demo["ready_s"], 2),
        "rss_bytes_per_tenant": round((loaded["rss_bytes"] - demo["rss_bytes"]) / extra),
        "peak_bytes_per_tenant": round((loaded["hwm_bytes"] - demo["hwm_bytes"]) / extra),
        "retained_bytes_per_tenant": round(retained),
    }


def main(argv: Sequence[str] | None = None) -> int:
    plan = parse_args(argv)
    try:
        wrk.binary()  # fail before starting anything
    except FileNotFoundError as error:
        print(f"authz benchmark: {error}", file=sys.stderr)
        return 2
    try:
        document = asyncio.run(bench(plan))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("authz benchmark: interrupted; everything it started has been stopped", file=sys.stderr)
        return 130
    except RuntimeError as error:  # a child that failed to start or died, a failed preflight or load run
        print(f"authz benchmark failed: {error}", file=sys.stderr)
        return 1
    plan.json_path.parent.mkdir(parents=True, exist_ok=True)
    plan.json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {plan.json_path}")
    errors = sum(r["errors"] for r in document["rounds"]["direct"])
    errors += sum(document["envoy"][stage]["errors"] for stage in STAGES)
    if errors:
        print(f"authz benchmark: {errors} calls or requests were not allowed", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
