"""Early exit's K x gate sweep on SmolLM2: which exit layer and which confidence gate make drafting pay.

Two parts, one run:

1. Offline, on the held-out calibration positions (prompts never used to fit a head): for each fitted head (its K)
   and each gate measure (entropy, 1 - p_max, varentropy of the draft distribution), the agreement alpha with the
   full model among the positions the gate lets draft, at coverages from 10 % to 100 %, and the threshold that
   gives each coverage. No timing: this is what the gate can know.
2. Timed: the greedy loop and early exit with every head at the entropy thresholds that let 25 / 50 / 75 / 100 %
   of held-out positions draft (plus 1 - p_max and varentropy at 50 % for the K given by ``--gate-k``), on the
   built-in chat prompts, interleaved, minimum of repeats, one runner (``engine.spec.bench``'s method).

    python -m bench.engine_sweep --heads DIR [DIR ...] [--prompts 8] [--max-new-tokens 64] [--repeats 2]

Writes ``bench/results/engine_sweep.json`` and ``.png`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.spec import calibration
from engine.spec.bench import BenchOptions, aggregate, compare_with_greedy, measure, prepare
from engine.spec.bench_modes import (
    GREEDY,
    DrafterFactory,
    Generate,
    ModeBuilder,
    ModeSetup,
    drafter_mode,
    greedy_mode,
)
from engine.spec.bench_prompts import CHAT, builtin_prompts
from engine.spec.drafters import Drafter
from engine.spec.drafters.early_exit import DEFAULT_MAX_TOKENS, EarlyExitDrafter
from engine.spec.gate import GATE_KINDS, Gate, GateKind, measures
from engine.spec.heads import ExitHead, load_head, model_hash
from engine.spec.models.smollm2 import cache_dir, ensure_smollm2
from engine.spec.runner import Runner

RESULTS = Path(__file__).parent / "results"
COVERAGES = (0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0)
TIMED_COVERAGES = (0.25, 0.5, 0.75, 1.0)
# fit-head's default continuation length, which keys its calibration cache.
CALIBRATION_TOKENS = 96


@dataclass(frozen=True)
class GatePoint:
    coverage: float
    threshold: float
    alpha: float


def gate_curves(runner: Runner, head: ExitHead, sequences: Sequence[calibration.CalibrationSequence]) -> dict[str, Any]:
    """Held-out alpha overall and per gate measure and coverage (see the module docstring)."""
    states = calibration.collect_states(runner, sequences, head.exit_layer)
    readout = calibration.readout_of(runner.weights)
    with torch.no_grad():
        logits = readout.logits(states.h_k @ head.weight.to(torch.float32), head.vocab)
        correct = (head.vocab[logits.argmax(-1)] == states.target).double()
        values = measures(logits)._asdict()
    curves: dict[str, list[dict[str, float]]] = {}
    for kind in GATE_KINDS:
        order = torch.argsort(values[kind])
        ranked, hits = values[kind][order], correct[order].cumsum(0)
        points = []
        for coverage in COVERAGES:
            count = max(1, round(coverage * len(order)))
            threshold = math.inf if coverage == 1.0 else float(ranked[count - 1])
            points.append(GatePoint(coverage, threshold, float(hits[count - 1]) / count).__dict__)
        curves[kind] = points
    return {"k": head.exit_layer, "positions": len(states), "alpha": float(correct.mean()), "curves": curves}


def threshold_at(curves: Mapping[str, Any], kind: str, coverage: float) -> float:
    return next(float(p["threshold"]) for p in curves[kind] if p["coverage"] == coverage)


def early_exit_mode(head: ExitHead, gate: Gate, draft_len: int) -> ModeBuilder:
    drafter = EarlyExitDrafter(head, gate, draft_len)  # stateless across sequences

    def drafters(setup: ModeSetup) -> DrafterFactory:
        def make() -> Drafter:
            return drafter

        return make

    return drafter_mode(drafters)


def timed_modes(
    setup: ModeSetup, heads: Sequence[ExitHead], curves: Mapping[int, Any], gate_k: int, draft_len: int
) -> tuple[dict[str, Generate], dict[str, dict[str, Any]]]:
    modes: dict[str, Generate] = {GREEDY: greedy_mode(setup)}
    configs: dict[str, dict[str, Any]] = {}
    planned: list[tuple[ExitHead, GateKind, float]] = [
        (head, "entropy", coverage) for head in heads for coverage in TIMED_COVERAGES
    ]
    planned += [(head, kind, 0.5) for head in heads if head.exit_layer == gate_k for kind in GATE_KINDS[1:]]
    for head, kind, coverage in planned:
        threshold = threshold_at(curves[head.exit_layer]["curves"], kind, coverage)
        name = f"k{head.exit_layer} {kind} {int(coverage * 100)}%"
        modes[name] = early_exit_mode(head, Gate(kind, threshold), draft_len)(setup)
        configs[name] = {"k": head.exit_layer, "kind": kind, "coverage": coverage, "threshold": threshold}
    return modes, configs


def plot(report: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (left, right) = pyplot.subplots(1, 2, figsize=(11, 4.2))
    for k, entry in report["offline"].items():
        for kind, style in zip(GATE_KINDS, ("-", "--", ":"), strict=True):
            points = entry["curves"][kind]
            label = f"K={k} {kind}" if kind == "entropy" or int(k) == report["gate_k"] else None
            if label:
                left.plot([p["coverage"] for p in points], [p["alpha"] for p in points], style, label=label)
    left.set(xlabel="share of positions the gate lets draft", ylabel="held-out agreement alpha", title="Gate curves")
    left.legend(fontsize=7)
    for k in report["offline"]:
        rows = [c for c in report["timed"].values() if c["k"] == int(k) and c["kind"] == "entropy"]
        right.plot([c["coverage"] for c in rows], [c["speedup"] for c in rows], "o-", label=f"K={k} entropy")
    for config in report["timed"].values():
        if config["kind"] != "entropy":
            right.plot([config["coverage"]], [config["speedup"]], "x", label=f"K={config['k']} {config['kind']}")
    right.axhline(1.0, color="grey", linewidth=0.8)
    right.set(xlabel="gate coverage (held-out)", ylabel="speedup over greedy (chat)", title="Early exit, timed")
    right.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", type=Path, nargs="+", required=True, help="exit-head artifacts (fit-head --out)")
    parser.add_argument("--heldout", type=int, default=60, help="held-out calibration prompts of the fit")
    parser.add_argument("--calibration", type=Path, default=cache_dir().parent / "calibration")
    parser.add_argument("--prompts", type=int, default=8, help="built-in chat prompts timed")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--draft-len", type=int, default=DEFAULT_MAX_TOKENS)
    parser.add_argument("--gate-k", type=int, default=4, help="K at which 1 - p_max and varentropy are timed too")
    parser.add_argument("--json", type=Path, default=RESULTS / "engine_sweep.json")
    args = parser.parse_args(argv)

    options = BenchOptions(max_new_tokens=args.max_new_tokens, repeats=args.repeats)
    prompts = [p for p in builtin_prompts() if p.set_name == CHAT][: args.prompts]
    workload = prepare(options, prompts)
    heads = sorted((load_head(path)[0] for path in args.heads), key=lambda head: head.exit_layer)
    heldout_runner, heldout = held_out_sequences(workload.runner, args.calibration, args.heldout)
    offline = {head.exit_layer: gate_curves(heldout_runner, head, heldout) for head in heads}
    setup = ModeSetup(workload.runner, options.max_draft)
    modes, configs = timed_modes(setup, heads, offline, args.gate_k, args.draft_len)
    measure(workload, modes, options.repeats, options.max_new_tokens)
    compare_with_greedy(workload, options.tie_ulps)
    for name, config in configs.items():
        config.update(aggregate(workload.records, name))
    report = {
        "model": "smollm2",
        "dtype": options.dtype,
        "threads": options.threads,
        "prompts": len(prompts),
        "max_new_tokens": options.max_new_tokens,
        "repeats": options.repeats,
        "draft_len": args.draft_len,
        "gate_k": args.gate_k,
        "baseline_tok_s": aggregate(workload.records, GREEDY)["tok_s"],
        "offline": {str(k): v for k, v in offline.items()},
        "timed": configs,
        "machine": workload.facts,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot(report, args.json.with_suffix(".png"))
    print(summary(report))
    return 0


def held_out_sequences(
    runner: Runner, cache: Path, heldout: int
) -> tuple[Runner, list[calibration.CalibrationSequence]]:
    """The fit's held-out generations, read from its calibration cache (generated where missing), and a runner
    on the same weights that can hold the longest of them."""
    directory = ensure_smollm2()
    _, prompts = calibration.split_prompts(0, heldout)
    encode = calibration.chat_encoder(directory)
    runner = Runner(runner.weights, max(len(encode(prompt)) for prompt in prompts) + CALIBRATION_TOKENS)
    path = calibration.cache_file(cache, model_hash(directory), runner.weights.dtype, CALIBRATION_TOKENS)
    return runner, calibration.generate_cached(runner, encode, prompts, CALIBRATION_TOKENS, path, None)


def summary(report: Mapping[str, Any]) -> str:
    lines = [f"greedy {report['baseline_tok_s']:.1f} tok/s; held-out alpha per K and gate coverage (entropy):"]
    for k, entry in report["offline"].items():
        alphas = " ".join(f"{p['coverage']:.0%}:{p['alpha']:.2f}" for p in entry["curves"]["entropy"])
        lines.append(f"  K={k} ({entry['positions']} positions) {alphas}")
    lines.append(f"{'config':<28} {'threshold':>9} {'speedup':>8} {'accept':>7} {'drafted':>8} identical")
    for name, config in report["timed"].items():
        lines.append(
            f"{name:<28} {config['threshold']:>9.3f} {config['speedup']:>7.2f}x {config['acceptance_rate'] or 0:>7.2f} "
            f"{config['drafted_step_share'] or 0:>8.2f} {config['identical_prompts']}/{config['prompts']}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
