"""``tokenlabs engine bench``: greedy vs speculative decoding on the torch engine (see :mod:`engine.spec.bench`).

Argument parsing only; torch and the engine are imported when the command runs, so the rest of the CLI works
without the ``engine`` extra.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from engine.spec.models.catalog import DTYPES, MODELS
from tokenlabs.cli.common import positive_int

DEFAULT_MODES_HELP = "every registered mode that can be built (now greedy, lookup)"


def _modes(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of modes")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=MODELS, default="smollm2", help="(default: %(default)s)")
    parser.add_argument(
        "--model-dir", type=Path, default=None, help="read the checkpoint from this directory instead of the cache"
    )
    parser.add_argument(
        "--prompts",
        type=Path,
        default=None,
        metavar="FILE",
        help="JSONL, one object per line with 'messages' (OpenAI chat) or 'prompt', optional 'set'; "
        "default: the built-in chat and copy-heavy prompts",
    )
    parser.add_argument("--max-new-tokens", type=positive_int, default=96, help="(default: %(default)s)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed runs per prompt and mode, min kept")
    parser.add_argument("--modes", type=_modes, default=None, help=f"comma-separated; default: {DEFAULT_MODES_HELP}")
    parser.add_argument("--dtype", choices=DTYPES, default="bf16", help="(default: %(default)s)")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch threads (default: %(default)s)")
    parser.add_argument("--max-draft", type=positive_int, default=4, help="tokens drafted per step at most")
    parser.add_argument(
        "--tie-ulps",
        type=float,
        default=4.0,
        help="a divergence from greedy is a near-tie when the logit gap it crossed is at most this many ulps of "
        "the top logit in the model's dtype (default: %(default)s)",
    )
    parser.add_argument("--ignore-eos", action="store_true", help="always generate --max-new-tokens tokens")
    parser.add_argument("--head", type=Path, default=None, help="fitted exit-head artifact, for early-exit modes")
    parser.add_argument(
        "--gate",
        default="entropy",
        metavar="KIND[:THRESHOLD]",
        help="early exit's confidence gate: entropy, one_minus_pmax or varentropy, the threshold in the measure's "
        "unit, inf for none (default: entropy at its default threshold, 1.0 nats)",
    )
    parser.add_argument(
        "--acceptance-floor",
        type=float,
        default=None,
        metavar="RATE",
        help="early exit pauses on a sequence whose recent drafts were accepted less often than this, e.g. 0.2 "
        "(default: 0, never; measured no gain on the built-in prompts)",
    )
    parser.add_argument(
        "--draft-len", type=positive_int, default=None, help="early exit's tokens per draft at most (default: 2)"
    )
    parser.add_argument("--json", dest="json_out", type=Path, required=True, metavar="OUT", help="write the report")
    parser.add_argument("--quiet", action="store_true", help="no per-prompt progress lines")


def run(args: argparse.Namespace) -> int:
    from engine.spec.bench import BenchOptions, run_bench, summary_table, write_report
    from engine.spec.bench_modes import ModeUnavailableError
    from engine.spec.gate import parse_gate

    try:
        options = BenchOptions(
            model=args.model,
            model_dir=args.model_dir,
            prompts_file=args.prompts,
            max_new_tokens=args.max_new_tokens,
            repeats=args.repeats,
            modes=args.modes,
            dtype=args.dtype,
            threads=args.threads,
            max_draft=args.max_draft,
            tie_ulps=args.tie_ulps,
            ignore_eos=args.ignore_eos,
            head=args.head,
            gate=parse_gate(args.gate),
        )
        if args.draft_len is not None:
            options = dataclasses.replace(options, draft_len=args.draft_len)
        if args.acceptance_floor is not None:
            options = dataclasses.replace(options, acceptance_floor=args.acceptance_floor)
        report = run_bench(options, progress=not args.quiet)
    except (ValueError, KeyError, ModeUnavailableError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"tokenlabs engine bench: {message}", file=sys.stderr)
        return 2
    write_report(report, args.json_out)
    print(summary_table(report))
    return 0
