"""``tokenlabs engine bench``: the greedy loop and every drafter mode on the same prompts, in the same run.

Method (the contract of every number in the report):

* One runner, one dtype, ``threads`` torch threads. Each mode decodes each prompt ``repeats`` times; the runs are
  interleaved (per prompt, per repeat, each mode in turn) so that a change in machine load hits every mode alike,
  and the minimum wall time per prompt and mode is kept. Every mode runs once untimed on the first prompt first.
* A time covers the whole generation, prefill included, as a request would see it.
* Per prompt set (the built-in ``chat`` and ``copy``, or the file's ``set`` names) and overall, per mode:
  ``tok_s`` = generated tokens / summed minimum times; ``speedup`` = the mode's tok/s / greedy's (a bf16 divergence
  can end an output earlier or later than greedy's, so rates are compared, not times);
  ``acceptance_rate`` = accepted / drafted tokens; ``mean_accepted_len`` = accepted tokens per step that drafted;
  ``identical`` = every output equals greedy's token for token; ``lossless`` = every difference is a near-tie
  (:mod:`engine.spec.bench_lossless`). Greedy's own entry has speedup 1 and no acceptance figures.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.spec.bench_lossless import DEFAULT_TIE_ULPS, Divergence, find_divergence
from engine.spec.bench_modes import GREEDY, Generate, Generation, ModeSetup, ModeUnavailableError
from engine.spec.bench_prompts import BenchPrompt, builtin_prompts, load_prompts
from engine.spec.drafters.early_exit import DEFAULT_MAX_TOKENS
from engine.spec.gate import Gate
from engine.spec.heads import load_head
from engine.spec.models.catalog import model_directory, torch_dtype
from engine.spec.modes import build_mode
from engine.spec.modes import mode_names as registered_modes
from engine.spec.runner import Runner, set_threads
from engine.spec.weights import load_checkpoint


@dataclass(frozen=True)
class BenchOptions:
    """The benchmark's knobs, as the CLI takes them. ``modes`` None means every registered mode that can be
    built; ``model_dir`` overrides where the ``model``'s checkpoint is read from."""

    model: str = "smollm2"
    model_dir: Path | None = None
    prompts_file: Path | None = None
    max_new_tokens: int = 96
    repeats: int = 3
    modes: tuple[str, ...] | None = None
    dtype: str = "bf16"
    threads: int = 2
    max_draft: int = 4
    tie_ulps: float = DEFAULT_TIE_ULPS
    ignore_eos: bool = False
    head: Path | None = None
    gate: Gate = field(default_factory=Gate.default)
    draft_len: int = DEFAULT_MAX_TOKENS
    acceptance_floor: float = 0.0


@dataclass
class PromptRun:
    """One prompt under one mode: its output (the first repeat's), its stats and its minimum time."""

    generation: Generation
    seconds: float
    deterministic: bool = True
    divergence: Divergence | None = None


@dataclass
class PromptRecord:
    set_name: str
    prompt_ids: list[int]
    runs: dict[str, PromptRun] = field(default_factory=dict)


def encode(tokenizer: Any, prompt: BenchPrompt) -> list[int]:
    """Token ids of a prompt: chat messages through the tokenizer's chat template with a generation prompt, raw
    text as is."""
    if prompt.messages is not None:
        text = tokenizer.apply_chat_template(list(prompt.messages), tokenize=False, add_generation_prompt=True)
        ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        ids = tokenizer(prompt.text)["input_ids"]
    return [int(i) for i in ids]


def select_modes(requested: Sequence[str] | None, setup: ModeSetup) -> tuple[dict[str, Generate], dict[str, str]]:
    """The modes to run, greedy first, and the registered ones skipped because they cannot be built (name to
    reason). A mode asked for by name that cannot be built raises :class:`ModeUnavailableError`; an unknown one
    raises ``KeyError``."""
    names = registered_modes() if requested is None else [GREEDY, *(n for n in requested if n != GREEDY)]
    modes: dict[str, Generate] = {}
    skipped: dict[str, str] = {}
    for name in names:
        try:
            modes[name] = build_mode(name, setup)
        except ModeUnavailableError as error:
            if requested is not None:
                raise
            skipped[name] = str(error)
    return modes, skipped


def time_generation(
    generate: Generate, prompt_ids: Sequence[int], new: int, eos: Collection[int]
) -> tuple[Generation, float]:
    started = time.perf_counter()
    generation = generate(prompt_ids, new, eos)
    return generation, time.perf_counter() - started


@dataclass
class Workload:
    """What every mode of one benchmark shares: the tokenized prompts, one runner sized for them, the EOS ids and
    the machine facts taken before the model was loaded."""

    records: list[PromptRecord]
    runner: Runner
    eos: set[int]
    facts: dict[str, Any]


def prepare(options: BenchOptions, prompts: Sequence[BenchPrompt] | None = None) -> Workload:
    """Loads the model and tokenizes ``prompts`` (default: the options' file, else the built-in set). Raises
    ``ValueError`` for invalid options."""
    if options.repeats < 1 or options.max_new_tokens < 1 or options.threads < 1:
        raise ValueError("repeats, max_new_tokens and threads must be >= 1")
    dtype = torch_dtype(options.dtype)
    if prompts is None:
        prompts = load_prompts(options.prompts_file) if options.prompts_file else builtin_prompts()
    set_threads(options.threads)
    facts = machine_facts(options.threads)
    from transformers import AutoTokenizer

    directory = model_directory(options.model, options.model_dir)
    tokenizer: Any = AutoTokenizer.from_pretrained(directory)
    weights = load_checkpoint(directory, dtype)
    records = [PromptRecord(prompt.set_name, encode(tokenizer, prompt)) for prompt in prompts]
    capacity = max(len(r.prompt_ids) for r in records) + options.max_new_tokens
    eos: set[int] = set()
    if not options.ignore_eos:
        eos = set(weights.config.eos_token_ids)
        if tokenizer.eos_token_id is not None:
            eos.add(int(tokenizer.eos_token_id))
    return Workload(records, Runner(weights, capacity), eos, facts)


def measure(
    workload: Workload, modes: Mapping[str, Generate], repeats: int, max_new_tokens: int, progress: bool = True
) -> None:
    """Times every mode on every prompt, interleaved, keeping each prompt's minimum (see the module docstring);
    fills ``workload.records``."""
    records, eos = workload.records, workload.eos
    for generate in modes.values():  # warm-up, untimed
        generate(records[0].prompt_ids, min(8, max_new_tokens), eos)
    for number, record in enumerate(records, start=1):
        for _ in range(repeats):
            for name, generate in modes.items():
                generation, seconds = time_generation(generate, record.prompt_ids, max_new_tokens, eos)
                run = record.runs.get(name)
                if run is None:
                    record.runs[name] = PromptRun(generation, seconds)
                else:
                    run.seconds = min(run.seconds, seconds)
                    run.deterministic &= generation.tokens == run.generation.tokens
        if progress:
            times = "  ".join(f"{name} {run.seconds:.2f}s" for name, run in record.runs.items())
            print(f"[{number}/{len(records)}] {record.set_name} ({len(record.prompt_ids)} tokens): {times}", flush=True)


def compare_with_greedy(workload: Workload, tie_ulps: float) -> None:
    """Records, per prompt and mode, where its output first leaves greedy's and whether that was a near-tie."""
    for record in workload.records:
        reference = record.runs[GREEDY].generation.tokens
        for name, run in record.runs.items():
            if name != GREEDY:
                tokens = run.generation.tokens
                run.divergence = find_divergence(workload.runner, record.prompt_ids, reference, tokens, tie_ulps)


def run_bench(options: BenchOptions, progress: bool = True) -> dict[str, Any]:
    """Runs the benchmark and returns its report (the JSON the CLI writes; see the module docstring). Raises
    ``ValueError`` for invalid options or prompts the model cannot hold."""
    workload = prepare(options)
    setup = ModeSetup(
        workload.runner, options.max_draft, options.head, options.gate, options.draft_len, options.acceptance_floor
    )
    modes, skipped = select_modes(options.modes, setup)
    measure(workload, modes, options.repeats, options.max_new_tokens, progress)
    compare_with_greedy(workload, options.tie_ulps)
    workload.facts["loadavg_at_end"] = _loadavg()
    return build_report(options, workload.records, list(modes), skipped, workload.facts)


def aggregate(records: Sequence[PromptRecord], name: str) -> dict[str, Any]:
    """One mode's figures over ``records`` (see the module docstring)."""
    runs = [r.runs[name] for r in records]
    seconds = sum(run.seconds for run in runs)
    greedy_runs = [r.runs[GREEDY] for r in records]
    greedy_rate = sum(len(run.generation.tokens) for run in greedy_runs) / sum(run.seconds for run in greedy_runs)
    tokens = sum(len(run.generation.tokens) for run in runs)
    stats = [run.generation.stats for run in runs if run.generation.stats is not None]
    drafted = sum(s.draft_tokens for s in stats)
    accepted = sum(s.accepted_tokens for s in stats)
    drafts = sum(s.drafts for s in stats)
    steps = sum(s.steps for s in stats)
    divergences = [run.divergence for run in runs if run.divergence is not None]
    return {
        "tok_s": tokens / seconds if seconds else 0.0,
        "speedup": tokens / seconds / greedy_rate if seconds else 0.0,
        "acceptance_rate": accepted / drafted if drafted else (None if not stats else 0.0),
        "mean_accepted_len": accepted / drafts if drafts else (None if not stats else 0.0),
        "drafted_step_share": drafts / steps if steps else None,
        "identical": not divergences,
        "lossless": all(d.near_tie for d in divergences),
        "identical_prompts": len(runs) - len(divergences),
        "prompts": len(runs),
        "tokens": tokens,
        "seconds": seconds,
    }


def build_report(
    options: BenchOptions,
    records: Sequence[PromptRecord],
    names: Sequence[str],
    skipped: dict[str, str],
    facts: dict[str, Any],
) -> dict[str, Any]:
    sets = sorted({r.set_name for r in records})
    modes: dict[str, Any] = {}
    for name in names:
        entry = aggregate(records, name)
        entry["by_set"] = {s: aggregate([r for r in records if r.set_name == s], name) for s in sets}
        modes[name] = entry
    return {
        "dtype": options.dtype,
        "threads": options.threads,
        "model": options.model,
        "baseline_tok_s": modes[GREEDY]["tok_s"],
        "modes": modes,
        "k": head_exit_layer(options.head),
        "gate": {"kind": options.gate.kind, "threshold": options.gate.threshold},
        "draft_len": options.draft_len,
        "acceptance_floor": options.acceptance_floor,
        "max_draft": options.max_draft,
        "max_new_tokens": options.max_new_tokens,
        "repeats": options.repeats,
        "ignore_eos": options.ignore_eos,
        "tie_ulps": options.tie_ulps,
        "prompts_source": str(options.prompts_file) if options.prompts_file else "builtin",
        "skipped_modes": skipped,
        "prompts": [_prompt_json(r) for r in records],
        "machine": facts,
    }


def head_exit_layer(head: Path | None) -> int | None:
    """K of the exit-head artifact at ``head``, if one was given."""
    return None if head is None else load_head(head)[1].exit_layer


def _prompt_json(record: PromptRecord) -> dict[str, Any]:
    return {
        "set": record.set_name,
        "prompt_tokens": len(record.prompt_ids),
        "modes": {
            name: {
                "seconds": run.seconds,
                "tokens": len(run.generation.tokens),
                "deterministic": run.deterministic,
                "acceptance_rate": None if run.generation.stats is None else run.generation.stats.acceptance_rate,
                "divergence": None if run.divergence is None else run.divergence.to_json(),
            }
            for name, run in record.runs.items()
        },
    }


def machine_facts(threads: int) -> dict[str, Any]:
    """Date, cores, CPU model and torch's CPU capability, kernel, load average at start, versions (Python, torch,
    transformers) and the torch threads used. (``bench.machine.machine_facts`` asks Envoy and wrk, which this
    benchmark does not use.)"""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "kernel": platform.release(),
        "loadavg_at_start": _loadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": importlib.metadata.version("transformers"),
        "torch_threads": threads,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def summary_table(report: dict[str, Any]) -> str:
    """A short table, one row per mode and prompt set (and overall): tok/s, speedup, acceptance, identical."""
    lines = [
        f"model {report['model']}, {report['dtype']}, {report['threads']} threads, max_new_tokens "
        f"{report['max_new_tokens']}, min of {report['repeats']}; early exit K={report['k']}, gate "
        f"{report['gate']['kind']} <= {report['gate']['threshold']}, draft_len {report['draft_len']}, "
        f"acceptance floor {report['acceptance_floor']};"
        f" load avg {report['machine']['loadavg_at_start']}"
        f" -> {report['machine']['loadavg_at_end']}",
        f"{'mode':<10} {'set':<8} {'tok/s':>7} {'speedup':>8} {'accept':>7} {'acc/draft':>9} {'identical':>10} "
        "lossless",
    ]
    for name, entry in report["modes"].items():
        rows = [*entry["by_set"].items(), ("all", entry)]
        for set_name, row in rows:
            accept = "-" if row["acceptance_rate"] is None else f"{row['acceptance_rate']:.2f}"
            length = "-" if row["mean_accepted_len"] is None else f"{row['mean_accepted_len']:.2f}"
            identical = f"{row['identical_prompts']}/{row['prompts']}"
            lines.append(
                f"{name:<10} {set_name:<8} {row['tok_s']:>7.1f} {row['speedup']:>7.2f}x {accept:>7} {length:>9} "
                f"{identical:>10} {'yes' if row['lossless'] else 'NO'}"
            )
    return "\n".join(lines)


def write_report(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
