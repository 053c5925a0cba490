"""``tokenlabs engine fit-head``: fit an exit head for early-exit drafting and save it as an artifact.

Register with ``add_arguments(parser)`` and ``parser.set_defaults(func=run)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.spec.models.catalog import MODELS
from tokenlabs.cli.common import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=MODELS, default="smollm2", help="(default: %(default)s)")
    parser.add_argument("--model-dir", type=Path, help="a Llama checkpoint directory instead of --model's")
    parser.add_argument("--k", type=positive_int, required=True, help="exit layer: draft from layers [0, K)")
    parser.add_argument("--kind", choices=("lsq", "distill"), default="distill", help="(default: %(default)s)")
    parser.add_argument("--prompts", type=positive_int, default=200, help="training prompts (default: %(default)s)")
    parser.add_argument("--heldout", type=int, default=40, help="held-out prompts (default: %(default)s)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=96, help="(default: %(default)s)")
    parser.add_argument("--vocab", type=positive_int, default=8192, help="draft vocabulary size (default: %(default)s)")
    parser.add_argument("--epochs", type=positive_int, default=4, help="distill epochs (default: %(default)s)")
    parser.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16", help="(default: %(default)s)")
    parser.add_argument("--threads", type=positive_int, default=2, help="(default: %(default)s)")
    parser.add_argument("--out", type=Path, help="artifact directory (default: next to the model, by K and kind)")
    parser.add_argument("--cache", type=Path, help="calibration cache directory (default: next to the model)")


def run(args: argparse.Namespace) -> int:
    import torch

    from engine.spec.fitting import FitOptions, fit_head
    from engine.spec.models.catalog import model_directory
    from engine.spec.models.smollm2 import ModelUnavailableError
    from engine.spec.runner import set_threads

    set_threads(args.threads)
    try:
        model_dir = model_directory(args.model, args.model_dir)
        out = args.out or model_dir.parent / "exit-heads" / f"{model_dir.name}-k{args.k}-{args.kind}"
        options = FitOptions(
            model_dir=model_dir,
            exit_layer=args.k,
            kind=args.kind,
            out=out,
            cache=args.cache or model_dir.parent / "calibration",
            prompts=args.prompts,
            heldout=args.heldout,
            max_new_tokens=args.max_new_tokens,
            vocab_size=args.vocab,
            epochs=args.epochs,
            dtype=torch.bfloat16 if args.dtype == "bf16" else torch.float32,
        )
        report = fit_head(options)
    except (ValueError, ModelUnavailableError, FileNotFoundError) as error:
        print(f"tokenlabs engine fit-head: {error}", file=sys.stderr)
        return 2
    print(f"generation {report.generate_s:.1f} s, fit {report.fit_s:.1f} s")
    for name, result in report.heldout.items():
        print(f"held-out {name:8} alpha {result.alpha:.3f}  kl {result.kl:.3f}  mse {result.mse:.3f}")
    meta = report.metadata
    print(f"saved {meta.kind} head K={meta.exit_layer} ({meta.calibration_positions} positions) to {out}")
    return 0
