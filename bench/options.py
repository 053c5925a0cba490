"""The command-line options every benchmark shares: rounds, run length, a quick check, the results file, Envoy's
worker threads."""

from __future__ import annotations

import argparse
from pathlib import Path


def benchmark_parser(
    prog: str, description: str | None, default_json: Path, *, rounds_help: str, duration_help: str, quick_help: str
) -> argparse.ArgumentParser:
    """A parser with ``--rounds``, ``--duration``, ``--quick``, ``--json`` and ``--envoy-concurrency``; a benchmark
    adds its own options before parsing."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help=f"{rounds_help} (default: 3)")
    parser.add_argument("--duration", type=float, default=10.0, help=f"{duration_help} (default: 10)")
    parser.add_argument("--quick", action="store_true", help=f"{quick_help}: a check, not a measurement")
    parser.add_argument("--json", type=Path, default=default_json, help=f"results file (default: {default_json})")
    parser.add_argument("--envoy-concurrency", type=int, default=2, help="worker threads of every Envoy (default: 2)")
    return parser


def rounds_and_duration(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    *,
    quick: tuple[int, float],
    min_duration_s: float,
    why: str = "",
) -> tuple[int, float]:
    """The rounds and seconds per run to measure: ``quick`` under ``--quick``; exits with a usage error when
    ``--rounds`` is below 1 or ``--duration`` below ``min_duration_s`` (``why`` says why that minimum)."""
    if args.rounds < 1 or args.duration < min_duration_s:
        parser.error(f"--rounds must be >= 1 and --duration >= {min_duration_s:g}{why}")
    return quick if args.quick else (args.rounds, args.duration)
