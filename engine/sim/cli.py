"""Command line options for running simulated workers, shared by ``tokenlabs engine sim`` and
``python -m engine.sim``."""

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from dataclasses import Field, fields, replace
from typing import Any

from engine.sim.config import SimConfig
from engine.sim.runner import DEFAULT_DRAIN_SECONDS, ListeningWorker, WorkerSpec, serve_until_signalled

_LOG_LEVELS = ("debug", "info", "warning", "error")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--worker",
        dest="workers",
        metavar="MODEL=HOST:PORT",
        action="append",
        type=parse_worker_spec,
        required=True,
        help="start a worker serving MODEL (a comma-separated list of names serves aliases) on HOST:PORT; "
        "repeat for more workers in this process",
    )
    for knob in fields(SimConfig):
        parser.add_argument(
            "--" + knob.name.replace("_", "-"),
            type=_knob_parser(knob),
            default=knob.default,
            help=f"{knob.metadata['help']} (default: %(default)s)",
        )
    parser.add_argument(
        "--drain-seconds",
        type=drain_seconds,
        default=DEFAULT_DRAIN_SECONDS,
        help="on SIGINT/SIGTERM, how long in-flight requests may take to finish (default: %(default)s)",
    )
    parser.add_argument("--log-level", choices=_LOG_LEVELS, default="warning", help="(default: %(default)s)")


def parse_worker_spec(text: str) -> WorkerSpec:
    """Parse ``MODEL[,ALIAS...]=HOST:PORT``; an IPv6 host goes in brackets."""
    models, equals, address = text.rpartition("=")
    host, colon, port = address.rpartition(":")
    names = tuple(name.strip() for name in models.split(","))
    host = host.removeprefix("[").removesuffix("]")
    if not equals or not colon or not port.isdigit() or not host or not all(names):
        raise argparse.ArgumentTypeError(f"invalid worker {text!r}: expected MODEL[,ALIAS...]=HOST:PORT")
    try:
        return WorkerSpec(model_names=names, host=host, port=int(port))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"invalid worker {text!r}: {error}") from error


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = SimConfig(**{knob.name: getattr(args, knob.name) for knob in fields(SimConfig)})
    try:
        asyncio.run(serve_until_signalled(args.workers, config, on_ready=_announce, drain_seconds=args.drain_seconds))
    except OSError as error:
        print(f"sim worker cannot listen: {error}", file=sys.stderr)
        return 1
    return 0


def _announce(spec: WorkerSpec, listening_worker: ListeningWorker) -> None:
    print(f"sim worker ready model={','.join(spec.model_names)} url={listening_worker.url}", flush=True)


def _boolean(text: str) -> bool:
    # The config file's YAML booleans reach the command line as Python's str(True) and str(False).
    words = {"true": True, "false": False}
    if text.lower() not in words:
        raise ValueError(text)
    return words[text.lower()]


_KNOB_TYPES: dict[object, tuple[str, Callable[[str], object]]] = {
    bool: ("bool", _boolean),
    int: ("int", int),
    float: ("float", float),
}


def _knob_parser(knob: "Field[object]") -> Callable[[str], object]:
    type_name, convert = _KNOB_TYPES[knob.type]

    def parse(text: str) -> object:
        try:
            value = convert(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {type_name}") from error
        try:
            # Each SimConfig check concerns one field, so a config differing from the defaults only here
            # validates exactly this value.
            changes: dict[str, Any] = {knob.name: value}
            replace(SimConfig(), **changes)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from error
        return value

    return parse


def drain_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds >= 0 (the engines' ``--drain-seconds``)."""
    try:
        seconds = float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from error
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"drain seconds must be a finite number >= 0, got {text!r}")
    return seconds
