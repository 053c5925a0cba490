"""Streaming runs → percentiles per run, the gateway's overhead over plain Envoy per round and as medians over
rounds, and the printed summary of the quota benchmark."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.machine import machine_line
from bench.quota_stream import StreamRecord, stream_problems
from bench.report import BUSY_MACHINE_PERCENT, table

BASELINE, GATEWAY = "plain_envoy", "full_chain"
METRICS = ("ttft_p50_ms", "ttft_p99_ms", "chunk_p50_ms", "chunk_p99_ms")
HEADINGS = ("TTFT p50", "TTFT p99", "chunk p50", "chunk p99")
COMPARED = ("plain", "gateway", "diff", "ratio")
# Problems of broken streams kept in the results, per run: enough to see what went wrong.
KEPT_PROBLEMS = 5


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation between the closest ranks (NaN for no values)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class StreamRun:
    """One closed-loop run of one target at one concurrency: latencies in ms over its whole streams."""

    round: int
    target: str
    concurrency: int
    requests: int
    chunk_delays: int
    ttft_p50_ms: float
    ttft_p99_ms: float
    chunk_p50_ms: float
    chunk_p99_ms: float
    broken: int
    problems: tuple[str, ...]
    cpu_percent: Mapping[str, float]

    def raw(self) -> dict[str, Any]:
        document = asdict(self)
        document["problems"] = list(self.problems)
        document["cpu_percent"] = {name: round(value, 1) for name, value in self.cpu_percent.items()}
        return document


def stream_run(
    round_number: int,
    target: str,
    concurrency: int,
    records: Sequence[StreamRecord],
    content_tokens: int,
    cpu_percent: Mapping[str, float],
) -> StreamRun:
    """Percentiles over the whole streams of a run; a stream that is not a 200 with ``content_tokens`` content
    chunks, its finish, ``[DONE]`` and no usage chunk (the client never asks for one) is broken, and left out."""
    problems, whole = [], []
    for record in records:
        found = [f"status {record.status}"] if record.status != 200 else []
        found += stream_problems(record, content_tokens, usage_asked=False)
        if found:
            problems.append("; ".join(found))
        else:
            whole.append(record)
    ttfts = [record.ttft_s * 1000 for record in whole if record.ttft_s is not None]
    gaps = [gap * 1000 for record in whole for gap in record.gaps_s]
    return StreamRun(
        round_number,
        target,
        concurrency,
        len(records),
        len(gaps),
        round(percentile(ttfts, 0.5), 3),
        round(percentile(ttfts, 0.99), 3),
        round(percentile(gaps, 0.5), 3),
        round(percentile(gaps, 0.99), 3),
        len(problems),
        tuple(problems[:KEPT_PROBLEMS]),
        cpu_percent,
    )


def compare(plain: StreamRun, gateway: StreamRun) -> dict[str, dict[str, float]]:
    """Per metric: both values, the gateway minus plain Envoy (ms) and the gateway over plain Envoy."""
    compared = {}
    for metric in METRICS:
        base, value = getattr(plain, metric), getattr(gateway, metric)
        ratio = round(value / base, 3) if base else float("nan")
        compared[metric] = {"plain": base, "gateway": value, "diff": round(value - base, 3), "ratio": ratio}
    return compared


def overhead(runs: Sequence[StreamRun], concurrencies: Sequence[int]) -> dict[str, Any]:
    """Per concurrency: the comparison in each round, and the medians over rounds (of each target's values, of the
    per-round differences and of the per-round ratios)."""
    result: dict[str, Any] = {}
    for concurrency in concurrencies:
        rounds = sorted({run.round for run in runs if run.concurrency == concurrency})
        per_round = []
        for number in rounds:
            pair = {run.target: run for run in runs if run.concurrency == concurrency and run.round == number}
            per_round.append(compare(pair[BASELINE], pair[GATEWAY]))
        median = {
            metric: {key: round(statistics.median(r[metric][key] for r in per_round), 3) for key in COMPARED}
            for metric in METRICS
        }
        result[f"c{concurrency}"] = {"median": median, "rounds": per_round}
    return result


def _cells(values: Mapping[str, Mapping[str, float]], key: str, form: str) -> list[str]:
    return [form.format(values[metric][key]) for metric in METRICS]


def format_overhead(summary: Mapping[str, Any]) -> str:
    sections = []
    for name, numbers in summary.items():
        median = numbers["median"]
        rows = [
            ["plain Envoy", *_cells(median, "plain", "{:.2f}")],
            ["gateway", *_cells(median, "gateway", "{:.2f}")],
            ["gateway - plain", *_cells(median, "diff", "{:+.2f}")],
            ["gateway / plain", *_cells(median, "ratio", "{:.2f}x")],
        ]
        rows += [
            [f"  round {index} diff", *_cells(values, "diff", "{:+.2f}")]
            for index, values in enumerate(numbers["rounds"], start=1)
        ]
        title = f"{name}: {name[1:]} concurrent stream(s), ms, medians over rounds"
        sections.append(f"{title}\n{table(['', *HEADINGS], rows)}")
    return "\n\n".join(sections)


def format_exactness(exact: Mapping[str, Any]) -> str:
    failed = [name for name, held in exact["checks"].items() if not held]
    replicas = ", ".join(f"{host}: {count}" for host, count in exact["extproc_streams_per_replica"].items())
    lines = [
        f"exactness: {exact['requests']} streamed requests at once, limit {exact['limit_tokens_per_minute']:,} "
        f"tokens/min: {exact['admitted']} admitted, {exact['refused_429']} refused (429), "
        f"{exact['peak_concurrent_admitted_streams']} admitted streams open at once at the peak; "
        f"ext_proc streams per extproc replica: {replicas}",
        f"  stored in Redis (minute window {exact['window_index']}): {exact['stored_minute']:,}; day window: "
        f"{exact['stored_day']:,}; reported by the workers: {exact['reported_by_workers']:,} "
        f"({exact['reported_prompt_tokens']:,} prompt + {exact['reported_completion_tokens']:,} completion); "
        f"seen by the client: {exact['tokens_seen_by_client']:,}",
        f"  minute counter in flight: peak {exact['peak_in_flight']:,} over {exact['counter_samples']} samples; "
        f"final {exact['stored_minute']:,} (limit {exact['limit_tokens_per_minute']:,})",
        "  EXACT: every check held" if exact["ok"] else f"  FAILED: {', '.join(failed)}",
    ]
    lines += [f"    {problem}" for problem in exact["broken"][:KEPT_PROBLEMS]]
    return "\n".join(lines)


def format_summary(document: Mapping[str, Any]) -> str:
    c = document["conditions"]
    head = (
        f"quota benchmark {c['date']}: {c['rounds']} round(s) x {c['duration_s']:g} s per run, medians over rounds\n"
        f"{machine_line(c, c['envoy_concurrency'])}; Python {c['python']}; "
        f"{c['redis_version']}\n"
        f"streams: {c['stream_tokens']} tokens, TTFT {c['worker_ttft_ms']} ms and {c['worker_itl_ms']} ms between "
        f"tokens at the worker; plain Envoy -> worker vs the full gateway (2 extproc replicas, Redis counters)"
    )
    runs: list[dict[str, Any]] = document["rounds"]
    broken = sum(run["broken"] for run in runs)
    sections = [head, format_overhead(document["streaming"]), f"broken streams in the streaming runs: {broken}"]
    sections.append(format_exactness(document["exactness"]))
    if document["warnings_logged"]:
        sections.append("warnings logged by the stack:\n" + "\n".join(document["warnings_logged"]))
    others = [run["cpu_percent"].get("other", 0.0) for run in runs]
    if others and statistics.median(others) > BUSY_MACHINE_PERCENT:
        sections.append(
            f"NOTE: other processes took a median {statistics.median(others):.0f} % of the machine during the "
            "streaming runs: the latencies are those of a shared machine."
        )
    return "\n\n".join(sections)
