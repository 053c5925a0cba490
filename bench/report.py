"""Raw measurements → per-stage medians, the printed tables and the JSON document."""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.machine import machine_line
from bench.stages import ENVOY_CALL_COUNTERS
from bench.wrk import WrkResult

BASELINE = "plain_envoy"
# Above this median share of CPU taken by processes outside the bench, req/s understate what the gateway can do.
BUSY_MACHINE_PERCENT = 10.0
# Columns of the CPU tables, in request-path order; names not listed (none today) are appended.
CPU_ORDER = ("envoy", "authz", "extproc", "epp", "workers", "wrk", "bench", "other", "idle")


@dataclass(frozen=True)
class Measurement:
    round: int
    stage: str
    connections: int
    wrk: WrkResult
    cpu_percent: Mapping[str, float]  # of the whole machine, over the loaded window

    def cpu_us_per_request(self) -> dict[str, float]:
        """CPU time each process spent per answered request: the cost that caps req/s once the cores are full."""
        cores = os.cpu_count() or 1
        return {
            name: percent / 100 * cores / self.wrk.rps * 1e6
            for name, percent in self.cpu_percent.items()
            if name != "idle" and self.wrk.rps > 0
        }

    def raw(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "stage": self.stage,
            "connections": self.connections,
            "rps": round(self.wrk.rps, 1),
            **asdict(self.wrk),
            "cpu_percent": _rounded(self.cpu_percent),
        }


def _rounded(values: Mapping[str, float], digits: int = 1) -> dict[str, float]:
    return {name: round(value, digits) for name, value in values.items()}


def _ordered(names: set[str]) -> list[str]:
    return [name for name in CPU_ORDER if name in names] + sorted(names - set(CPU_ORDER))


def _median_of(items: Sequence[Mapping[str, float]]) -> dict[str, float]:
    names = _ordered({name for item in items for name in item})
    return {name: statistics.median(item.get(name, 0.0) for item in items) for name in names}


def _median(runs: Sequence[Measurement], value: Callable[[Measurement], float]) -> float:
    return statistics.median(value(run) for run in runs)


def summarise(
    measurements: Sequence[Measurement], stages: Sequence[str], calls: Mapping[str, Mapping[str, float]]
) -> dict[str, dict[str, Any]]:
    """Median over rounds per stage; ratios are of medians, against plain_envoy when it ran."""
    summary: dict[str, dict[str, Any]] = {}
    for stage in stages:
        loaded = [m for m in measurements if m.stage == stage and m.connections > 1]
        serial = [m for m in measurements if m.stage == stage and m.connections == 1]
        summary[stage] = {
            "rps": round(_median(loaded, lambda m: m.wrk.rps), 1),
            "p50_ms": round(_median(loaded, lambda m: m.wrk.p50_ms), 3),
            "p99_ms": round(_median(loaded, lambda m: m.wrk.p99_ms), 3),
            "p50_ms_c1": round(_median(serial, lambda m: m.wrk.p50_ms), 3),
            "rps_c1": round(_median(serial, lambda m: m.wrk.rps), 1),
            "errors": sum(m.wrk.errors for m in (*loaded, *serial)),
            "cpu_percent_c16": _rounded(_median_of([m.cpu_percent for m in loaded])),
            "cpu_us_per_request_c16": _rounded(_median_of([m.cpu_us_per_request() for m in loaded]), 0),
            "cpu_us_per_request_c1": _rounded(_median_of([m.cpu_us_per_request() for m in serial]), 0),
            "envoy_calls_per_request": dict(calls.get(stage, {})),
        }
    if BASELINE in summary:
        base = summary[BASELINE]
        for numbers in summary.values():
            numbers["vs_plain"] = {
                key: round(numbers[key] / base[key], 2) if base[key] else None
                for key in ("rps", "p50_ms", "p99_ms", "p50_ms_c1")
            }
    return summary


def _columns(summary: Mapping[str, Mapping[str, Any]], key: str) -> list[str]:
    return _ordered({name for numbers in summary.values() for name in numbers[key]})


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [header, *rows]
    text = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    ]
    return "\n".join(text)


def _ratio(numbers: Mapping[str, Any], key: str) -> str:
    ratio = numbers.get("vs_plain", {}).get(key)
    return f"{ratio:.2f}x" if ratio is not None else "-"


def format_summary(summary: Mapping[str, Mapping[str, Any]], conditions: Mapping[str, Any]) -> str:
    main_rows = [
        [
            stage,
            f"{n['rps']:,.0f}",
            f"{n['p50_ms']:.2f}",
            f"{n['p99_ms']:.2f}",
            f"{n['p50_ms_c1']:.2f}",
            f"{n['rps_c1']:,.0f}",
            str(n["errors"]),
            _ratio(n, "rps"),
            _ratio(n, "p50_ms_c1"),
        ]
        for stage, n in summary.items()
    ]
    main = table(
        [
            "stage",
            "req/s c16",
            "p50 c16 ms",
            "p99 c16 ms",
            "p50 c1 ms",
            "req/s c1",
            "errors",
            "rps/plain",
            "p50c1/plain",
        ],
        main_rows,
    )
    calls = table(
        ["stage", *ENVOY_CALL_COUNTERS],
        [
            [stage, *(f"{n['envoy_calls_per_request'].get(c, 0.0):.2f}" for c in ENVOY_CALL_COUNTERS)]
            for stage, n in summary.items()
        ],
    )
    sections = [_conditions_line(conditions), main, f"Plugin calls per request, as Envoy counts them\n{calls}"]
    for key, title, digits in (
        ("cpu_percent_c16", "CPU share at c=16, % of all cores (sums to ~100 with other and idle)", "{:.1f}"),
        ("cpu_us_per_request_c16", "CPU time per request at c=16, µs", "{:.0f}"),
        ("cpu_us_per_request_c1", "CPU time per request at c=1, µs", "{:.0f}"),
    ):
        columns = _columns(summary, key)
        rows = [[stage, *(digits.format(n[key].get(c, 0.0)) for c in columns)] for stage, n in summary.items()]
        sections.append(f"{title}\n{table(['stage', *columns], rows)}")
    others = [n["cpu_percent_c16"].get("other", 0.0) for n in summary.values()]
    if others and statistics.median(others) > BUSY_MACHINE_PERCENT:
        sections.append(
            f"NOTE: other processes took a median {statistics.median(others):.0f} % of the machine during the runs: "
            "req/s and latencies are understated; CPU time per request is the steadier comparison."
        )
    return "\n\n".join(sections)


def _conditions_line(c: Mapping[str, Any]) -> str:
    return (
        f"gateway benchmark {c['date']}: {c['rounds']} round(s) x {c['duration_s']:g} s per run, medians over rounds\n"
        f"{machine_line(c, c['envoy_concurrency'])}; {c['wrk_version']}; "
        f"Python {c['python']}\n"
        f"request: POST {c['path']}, {c['body_bytes']} B body, max_tokens {c['output_tokens']}, non-streaming; "
        f"workers with zero latency; c16 = 16 connections/2 threads, c1 = 1 connection/1 thread"
    )
