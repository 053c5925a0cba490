"""``tokenlabs envoy render``: print the Envoy bootstrap for a config."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tokenlabs.cli.common import add_config_option, load_settings
from tokenlabs.envoy_config import render_bootstrap


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("envoy", help="Envoy configuration")
    commands = parser.add_subparsers(dest="envoy_command", metavar="COMMAND", required=True)
    render = commands.add_parser("render", help="render the Envoy bootstrap for this config")
    add_config_option(render)
    render.add_argument("--template", type=Path, default=None, help="bootstrap template (default: envoy/)")
    render.add_argument("-o", "--output", type=Path, default=None, help="write here instead of stdout")
    render.set_defaults(func=run_render)


def run_render(args: argparse.Namespace) -> int:
    text = render_bootstrap(load_settings(args), args.template)
    if args.output is None:
        print(text, end="")
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0
