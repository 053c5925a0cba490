"""The ``tokenlabs`` command line.

Each subcommand lives in its own module exposing ``register(subparsers)``; the module sets ``func`` on its parser
to a callable ``(args) -> int``. Registration is explicit, here and nowhere else.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tokenlabs.cli import dev, engine, envoy, serve, tenants, usage


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenlabs",
        description="Envoy plugin servers for multi-tenant LLM inference, and the tools around them.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (dev, envoy, serve, engine, tenants, usage):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
