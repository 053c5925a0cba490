"""``tokenlabs serve authz|extproc|epp``: run one plugin server in the foreground."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import authz.main
import epp.main
import extproc.main
from tokenlabs.cli.common import add_config_option, load_settings
from tokenlabs.settings import Settings
from tokenlabs.telemetry import configure_logging

SERVERS: dict[str, Callable[[Settings], Coroutine[Any, Any, None]]] = {
    "authz": authz.main.serve,
    "extproc": extproc.main.serve,
    "epp": epp.main.serve,
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("serve", help="run one plugin server (authz, extproc or epp)")
    parser.add_argument("server", choices=sorted(SERVERS))
    add_config_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    configure_logging(settings.log_level)
    asyncio.run(SERVERS[args.server](settings))
    return 0
