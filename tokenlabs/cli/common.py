"""Options and start-up steps every subcommand shares."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tokenlabs.errors import ConfigError
from tokenlabs.settings import Settings, load


def positive_int(value: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        number = int(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from error
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {number}")
    return number


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=None,
        help="tokenlabs YAML config (default: $TOKENLABS_CONFIG, else ./tokenlabs.yaml)",
    )


def load_settings(args: argparse.Namespace) -> Settings:
    """Load settings or exit with status 2 and the message naming the bad key."""
    try:
        return load(args.config)
    except ConfigError as error:
        print(f"tokenlabs: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def aligned(rows: Sequence[Sequence[str]]) -> str:
    """Rows of cells as text columns, two spaces apart, each as wide as its widest cell."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )
