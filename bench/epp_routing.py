"""Routing benchmark: TTFT of a shared-prefix workload under each picking policy, on a pool of simulated workers.

Policies are the picker's built-in profiles (epp/scheduling/registry.py): ``round_robin``, ``least_request``,
``gie_default`` (queue 2, kv-cache 2, prefix 3, max-score) and ``tokenlabs``. For every rate and round the
policies run in a shuffled order on identical arrivals, each on a freshly started pool (cold caches, zeroed
counters). Reported per policy and rate: TTFT p50/p90/p99, output tokens/s, prefix-cache hit rate (the workers'
own counters), decision time; the headline compares policies at the first rate where round-robin's TTFT p90
passes 1 s. Also the decision cost at 10 and 100 endpoints (synthetic metrics, no network).

    python -m bench.epp_routing [--quick] [--rates 4,8,12] [--endpoints 8] [--json OUT]
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from bench.epp_decision import decision_latency
from bench.epp_driver import Outcome, run_load
from bench.epp_pool import HITS_AND_QUERIES, SIM_KNOBS, SimPool
from bench.epp_workload import Workload, WorkloadShape
from bench.machine import machine_facts
from bench.options import benchmark_parser, rounds_and_duration

RESULTS = Path(__file__).parent / "results"
# Arrivals in the first fifth of each run warm the caches and are not counted (the workers' hit counters are).
WARMUP_SHARE = 0.2
POLICIES = ("round_robin", "least_request", "gie_default", "tokenlabs")
HITS, QUERIES = HITS_AND_QUERIES


def percentile(values: Sequence[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def summarise(outcomes: Sequence[Outcome], seconds: float, hits: float, queries: float) -> dict[str, Any]:
    ttfts = [o.ttft_s for o in outcomes if o.ttft_s is not None]
    decisions = [o.decision_s for o in outcomes]
    return {
        "requests": len(outcomes),
        "failed": sum(1 for o in outcomes if o.ttft_s is None),
        "ttft_p50_s": percentile(ttfts, 0.5),
        "ttft_p90_s": percentile(ttfts, 0.9),
        "ttft_p99_s": percentile(ttfts, 0.99),
        "output_tokens_per_s": sum(o.output_tokens for o in outcomes) / seconds,
        "prefix_hit_rate": hits / queries if queries else 0.0,
        "decision_p50_ms": (percentile(decisions, 0.5) or 0.0) * 1000,
        "decision_p99_ms": (percentile(decisions, 0.99) or 0.0) * 1000,
    }


async def measure_rate(
    rate: float,
    rounds: int,
    duration_s: float,
    size: int,
    workload: Workload,
    policies: Sequence[str],
    scrape_s: float,
    warmup_s: float,
) -> dict[str, dict[str, Any]]:
    pooled: dict[str, list[Outcome]] = {policy: [] for policy in policies}
    counters: dict[str, list[float]] = {policy: [0.0, 0.0, 0.0] for policy in policies}
    for round_index in range(rounds):
        arrivals = workload.arrivals(rate, duration_s, seed=round_index * 7919 + int(rate * 100))
        order = list(policies)
        random.Random(round_index + int(rate * 100)).shuffle(order)
        for policy in order:
            pool = SimPool.launch(size)
            try:
                await pool.wait_healthy()
                outcomes = await run_load(policy, pool.endpoints, arrivals, scrape_s, timeout_s=120.0)
                seen = await pool.counters([HITS, QUERIES])
            finally:
                pool.stop()
            # The first seconds fill empty caches for every policy alike; they are not what a policy is judged on.
            pooled[policy].extend(o for o in outcomes if o.at_s >= warmup_s)
            counters[policy][0] += seen[HITS]
            counters[policy][1] += seen[QUERIES]
            counters[policy][2] += duration_s - warmup_s
            p90 = percentile([o.ttft_s for o in outcomes if o.ttft_s is not None], 0.9)
            print(
                f"  rate {rate:g}/s round {round_index + 1} {policy:>13}: ttft p90 {p90 or float('nan'):.3f} s",
                flush=True,
            )
    return {
        policy: {
            "rate": rate,
            **summarise(pooled[policy], counters[policy][2], counters[policy][0], counters[policy][1]),
        }
        for policy in policies
    }


def reference_rate(by_rate: Sequence[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The first rate where round-robin's TTFT p90 passes 1 s (the highest rate if it never does)."""
    for results in by_rate:
        p90 = results.get("round_robin", {}).get("ttft_p90_s")
        if p90 is not None and p90 > 1.0:
            return results
    return by_rate[-1]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def plot(by_rate: Sequence[dict[str, dict[str, Any]]], policies: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    for policy in policies:
        points = [(r[policy]["rate"], r[policy]["ttft_p90_s"]) for r in by_rate if r[policy]["ttft_p90_s"] is not None]
        axes.plot([x for x, _ in points], [y for _, y in points], marker="o", label=policy)
    axes.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    axes.set_xlabel("arrival rate (requests/s)")
    axes.set_ylabel("TTFT p90 (s)")
    axes.set_yscale("log")
    axes.set_title("Shared-prefix workload: TTFT p90 by picking policy")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


async def main_async(argv: Sequence[str]) -> int:
    parser = benchmark_parser(
        "bench.epp_routing",
        __doc__,
        RESULTS / "epp_routing.json",
        rounds_help="rounds per rate (each runs every policy once)",
        duration_help="seconds of arrivals per run",
        quick_help="two rates, one short round, a 4-endpoint pool",
    )
    parser.add_argument("--rates", default="8,14,20,24", help="arrival rates in requests/s (default: 8,14,20,24)")
    parser.add_argument("--endpoints", type=int, default=4, help="simulated workers in the pool (default: 4)")
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma-separated profiles to compare")
    parser.add_argument("--scrape-interval-ms", type=float, default=50.0, help="picker scrape interval (default: 50)")
    parser.add_argument("--decisions", type=int, default=3000, help="decisions timed per policy and pool size")
    args = parser.parse_args(argv)
    rounds, duration_s = rounds_and_duration(parser, args, quick=(1, 4.0), min_duration_s=2.0)
    rates = [float(rate) for rate in args.rates.split(",")]
    size = args.endpoints
    shape = WorkloadShape()
    if args.quick:
        rates, size, shape = [2.0, 6.0], 4, WorkloadShape(groups=8, system_prompt_words=400)
    policies = [policy.strip() for policy in args.policies.split(",") if policy.strip()]
    workload = Workload.build(shape)
    facts = machine_facts(uses_wrk=False)
    print(
        f"routing: {size} simulated workers, {len(policies)} policies, rates {rates}, {rounds} x {duration_s:g} s",
        flush=True,
    )
    by_rate = [
        await measure_rate(
            rate,
            rounds,
            duration_s,
            size,
            workload,
            policies,
            args.scrape_interval_ms / 1000,
            duration_s * WARMUP_SHARE,
        )
        for rate in rates
    ]
    reference = reference_rate(by_rate)
    decisions = args.decisions if not args.quick else 300
    decision = {
        str(pool_size): {
            policy: _latency_summary(await decision_latency(policy, pool_size, workload, decisions))
            for policy in policies
        }
        for pool_size in (10, 100)
    }
    tokenlabs = reference.get("tokenlabs", {})
    result = {
        "machine": facts,
        "conditions": {
            "endpoints": size,
            "rates": rates,
            "rounds": rounds,
            "duration_s": duration_s,
            "scrape_interval_ms": args.scrape_interval_ms,
            "workload": shape.__dict__,
            "sim": dict(SIM_KNOBS),
            "saturation": "off (every request is sent)",
            "warmup_share": WARMUP_SHARE,
        },
        "reference_rate": next(iter(reference.values()))["rate"],
        "policies": reference,
        "ratios_at_reference": {
            "round_robin_over_tokenlabs_ttft_p90": ratio(
                reference.get("round_robin", {}).get("ttft_p90_s"), tokenlabs.get("ttft_p90_s")
            ),
            "gie_default_over_tokenlabs_ttft_p90": ratio(
                reference.get("gie_default", {}).get("ttft_p90_s"), tokenlabs.get("ttft_p90_s")
            ),
        },
        "by_rate": by_rate,
        "decision_latency": decision,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    plot(by_rate, policies, args.json.with_suffix(".png"))
    print(report(result))
    return 0


def _latency_summary(timings: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": statistics.median(timings) * 1000,
        "p99_ms": (percentile(timings, 0.99) or 0.0) * 1000,
        "decisions": len(timings),
    }


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [
        f"machine: {machine['nproc']} x {machine['cpu_model']}, load avg at start {machine['loadavg_at_start']}",
        f"pool: {result['conditions']['endpoints']} simulated workers; "
        f"reference rate {result['reference_rate']:g} req/s",
        f"{'rate':>5} {'policy':>13} {'p50 s':>7} {'p90 s':>7} {'p99 s':>7} {'tok/s':>7} {'hit':>5} {'fail':>4}",
    ]
    for results in result["by_rate"]:
        for policy, row in results.items():
            lines.append(
                f"{row['rate']:>5g} {policy:>13} {_fmt(row['ttft_p50_s']):>7} {_fmt(row['ttft_p90_s']):>7} "
                f"{_fmt(row['ttft_p99_s']):>7} {row['output_tokens_per_s']:>7.0f} "
                f"{row['prefix_hit_rate']:>5.2f} {row['failed']:>4}"
            )
    ratios = result["ratios_at_reference"]
    lines.append(
        "TTFT p90 at the reference rate: round_robin / tokenlabs = "
        f"{_fmt(ratios['round_robin_over_tokenlabs_ttft_p90'], 2)}x, gie_default / tokenlabs = "
        f"{_fmt(ratios['gie_default_over_tokenlabs_ttft_p90'], 2)}x"
    )
    for size, policies in result["decision_latency"].items():
        cells = ", ".join(f"{p} {v['p50_ms']:.3f}/{v['p99_ms']:.3f}" for p, v in policies.items())
        lines.append(f"decision p50/p99 ms at {size} endpoints: {cells}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(main_async(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
