"""The authz benchmark's targets and printed summary, from its JSON document."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from bench.machine import machine_line
from bench.report import BUSY_MACHINE_PERCENT, table

# The targets: checks/s of one process and p99 direct over gRPC; authz-only req/s as a share of plain Envoy's.
CHECKS_PER_S = 3_000
P99_MS = 2.0
ENVOY_RATIO = 0.40
LATENCY_AT = ("c1", "c8")


def targets(document: Mapping[str, Any]) -> dict[str, Any]:
    """Each target with what was reached. Throughput is the highest-concurrency setting's; ``per_core`` scales it
    to the server's event-loop thread having a whole core (it had ``server_main_thread_cores``)."""
    authz = document["direct"]["authz"]
    loaded = authz[list(authz)[-1]]
    ratio = document["envoy"]["authz_only_vs_plain"]["rps_c16"]["median"]
    main_thread = loaded["server_main_thread_cores"]
    return {
        "checks_per_s": {
            "target": CHECKS_PER_S,
            "reached": loaded["calls_per_s"],
            "per_core": round(loaded["calls_per_s"] / main_thread) if main_thread else None,
            "met": loaded["calls_per_s"] >= CHECKS_PER_S,
        },
        "p99_ms": {
            "target": P99_MS,
            **{at: authz[at]["p99_ms"] for at in LATENCY_AT},
            "met": all(authz[at]["p99_ms"] < P99_MS for at in LATENCY_AT),
        },
        "envoy_rps_ratio": {"target": ENVOY_RATIO, "reached": ratio, "met": ratio is not None and ratio >= ENVOY_RATIO},
    }


def _spread(stats: Mapping[str, float | None]) -> str:
    if stats["median"] is None:
        return "-"
    return f"{stats['median']:.2f} [{stats['min']:.2f}-{stats['max']:.2f}]"


def _mb(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB"


def _conditions(c: Mapping[str, Any]) -> str:
    return (
        f"authz benchmark {c['date']}: {c['tenants']:,} tenants ({', '.join(c['tiers'])}), {c['rounds']} round(s) x "
        f"{c['duration_s']:g} s per run, medians over rounds\n"
        f"{machine_line(c, c['envoy']['envoy_concurrency'])}; {c['wrk_version']}; "
        f"Python {c['python']}\n"
        f"quota store: {c['quota_store']}"
    )


def _tenants(t: Mapping[str, Any]) -> str:
    demo, loaded = t["demo"], t["loaded"]
    return (
        f"Tenants: {t['count']:,} load in {t['load_s']:.1f} s (SERVING after {loaded['ready_s']:.1f} s, "
        f"{demo['ready_s']:.1f} s with the {demo['count']} demo tenants).\n"
        f"RSS {_mb(loaded['rss_bytes'])} vs {_mb(demo['rss_bytes'])}: {t['rss_bytes_per_tenant']:,} B per tenant "
        f"(peak {t['peak_bytes_per_tenant']:,} B; after the runs {_mb(loaded['after_runs']['rss_bytes'])}); the "
        f"snapshot itself retains {t['retained_bytes_per_tenant']:,} B per tenant: RSS stays near its peak, the rest "
        "is memory the load touched and the allocators kept."
    )


def _direct(direct: Mapping[str, Any]) -> str:
    rows = [
        [
            method,
            at,
            f"{n['calls_per_s']:,.0f}",
            f"{n['p50_ms']:.2f}",
            f"{n['p99_ms']:.2f}",
            f"{n['server_cpu_us_per_call']:.0f}",
            f"{n['server_cores']:.2f}",
            f"{n['server_main_thread_cores']:.2f}",
            f"{n['client_cpu_us_per_call']:.0f}",
            f"{n['machine_idle_percent']:.0f}",
            str(n["errors"]),
        ]
        for method in ("authz", "health")
        for at, n in direct[method].items()
    ]
    header = ["call", "in flight", "calls/s", "p50 ms", "p99 ms", "server µs/call", "server cores", "main thread"]
    text = table([*header, "client µs/call", "idle %", "errors"], rows)
    ratios = "; ".join(
        f"{at}: calls/s {_spread(r['calls_per_s'])}, server µs/call {_spread(r['server_cpu_us_per_call'])}"
        for at, r in direct["authz_vs_health"].items()
    )
    return (
        "Direct gRPC (authz = Check for random keys; health = no-op call on the same server, the grpc.aio floor)\n"
        f"{text}\nauthz / health per round, median [min-max]: {ratios}"
    )


def _envoy(envoy: Mapping[str, Any]) -> str:
    stages = [name for name in envoy if name != "authz_only_vs_plain"]
    rows = [
        [
            stage,
            f"{n['rps']:,.0f}",
            f"{n['p50_ms']:.2f}",
            f"{n['p99_ms']:.2f}",
            f"{n['rps_c1']:,.0f}",
            f"{n['p50_ms_c1']:.2f}",
            str(n["errors"]),
            *(f"{n['cpu_us_per_request_c16'].get(name, 0.0):.0f}" for name in ("envoy", "authz", "workers", "wrk")),
        ]
        for stage, n in ((stage, envoy[stage]) for stage in stages)
    ]
    header = ["stage", "req/s c16", "p50 c16 ms", "p99 c16 ms", "req/s c1", "p50 c1 ms", "errors"]
    text = table([*header, "µs envoy", "µs authz", "µs workers", "µs wrk"], rows)
    ratios = envoy["authz_only_vs_plain"]
    return (
        "Through Envoy (wrk; CPU µs per request at c16)\n"
        f"{text}\nauthz_only / plain_envoy req/s per round, median [min-max]: c16 {_spread(ratios['rps_c16'])}, "
        f"c1 {_spread(ratios['rps_c1'])}"
    )


def _targets(t: Mapping[str, Any]) -> str:
    checks, p99, ratio = t["checks_per_s"], t["p99_ms"], t["envoy_rps_ratio"]
    met = {True: "met", False: "NOT met"}
    return (
        f"Targets: >= {checks['target']:,} checks/s: {checks['reached']:,.0f} ({met[checks['met']]}; "
        f"{checks['per_core'] or 0:,} with the event loop on a whole core) | p99 < {p99['target']:g} ms: "
        + ", ".join(f"{at} {p99[at]:.2f}" for at in LATENCY_AT)
        + f" ({met[p99['met']]}) | through Envoy >= {ratio['target']:.0%} of plain: "
        + (f"{ratio['reached']:.0%}" if ratio["reached"] is not None else "-")
        + f" ({met[ratio['met']]})"
    )


def _profile(p: Mapping[str, Any]) -> str:
    def rows(items: Sequence[Mapping[str, Any]], key: str) -> list[list[str]]:
        return [[item[key], f"{item['us_per_check']:.1f}", f"{item['percent']:.1f}"] for item in items]

    return (
        f"Where the time goes: cProfile of the server's event loop, c{p['concurrency']}, {p['checks']:,} checks, "
        f"{p['busy_us_per_check']:.0f} µs busy per check under the profiler "
        f"({p['load']['calls_per_s']:,.0f} checks/s profiled)\n"
        f"{table(['category (self time)', 'µs/check', '%'], rows(p['categories'], 'category'))}\n\n"
        f"{table(['top functions (self time)', 'µs/check', '%'], rows(p['top_self'][:8], 'function'))}\n\n"
        f"{table(['our functions (cumulative)', 'µs/check', '%'], rows(p['ours_cumulative'][:8], 'function'))}"
    )


def format_summary(document: Mapping[str, Any]) -> str:
    sections = [
        _conditions(document["conditions"]),
        _tenants(document["tenants"]),
        _direct(document["direct"]),
        _envoy(document["envoy"]),
        _profile(document["profile"]),
        _targets(document["targets"]),
    ]
    others = [m["cpu_percent"].get("other", 0.0) for m in document["rounds"]["envoy"]]
    idle = [r["machine_idle_percent"] for r in document["rounds"]["direct"]]
    if others and statistics.median(others) > BUSY_MACHINE_PERCENT:
        sections.append(
            f"NOTE: processes outside the bench took a median {statistics.median(others):.0f} % of the machine during "
            f"the Envoy runs (direct runs: median idle {statistics.median(idle):.0f} %): throughput and latency are "
            "understated; CPU time per call is the steadier number."
        )
    return "\n\n".join(sections)
