"""Through Envoy: plain Envoy against the authz-only chain (ext_authz → the authz server with the bench's tenants).

Both targets come from ``bench.stages`` exactly as the gateway benchmark builds them and are driven by wrk through
``bench.envoy_rounds``; only the stack differs: one simulated worker process and the two Envoys, while the authz
server is the one the direct runs use (started beforehand). Ratios authz_only / plain_envoy are taken round by
round, each pair measured back to back, and summarised as median, min and max.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.authz_direct import ratio_stats
from bench.report import Measurement, summarise
from bench.stages import Target, make_targets
from tokenlabs.devstack import Stack, StackOptions
from tokenlabs.envoy_config import render_bootstrap
from tokenlabs.settings import Settings

STAGES = ("plain_envoy", "authz_only")


def envoy_stack(settings: Settings, workdir: Path, concurrency: int) -> tuple[Stack, list[Target]]:
    """The worker and one Envoy per stage (each ``--concurrency concurrency``), not yet started."""
    assert settings.source is not None
    stack = Stack(settings, StackOptions(settings.source, envoy_concurrency=concurrency, echo=lambda line: None))
    children = {child.name: child for child in stack.children}
    targets = make_targets(STAGES, settings, children["envoy"], render_bootstrap(settings), workdir, concurrency)
    stack.children[:] = [children["workers"], *(target.envoy for target in targets)]
    return stack, targets


def workers_pid(stack: Stack) -> int:
    process = next(child.process for child in stack.children if child.name == "workers")
    assert process is not None, "the stack has not started"
    return process.pid


def summarise_envoy(measurements: Sequence[Measurement], calls: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """The gateway benchmark's per-stage medians, plus per-round ratios of req/s at 16 connections and at 1."""
    summary: dict[str, Any] = summarise(measurements, STAGES, calls)
    ratios = {}
    for connections in (16, 1):
        runs = {(m.round, m.stage): m.wrk.rps for m in measurements if m.connections == connections}
        rounds = sorted({index for index, _ in runs})
        ratios[f"rps_c{connections}"] = ratio_stats(
            [runs[(r, STAGES[1])] / runs[(r, STAGES[0])] for r in rounds if runs.get((r, STAGES[0]))]
        )
    summary["authz_only_vs_plain"] = ratios
    return summary
