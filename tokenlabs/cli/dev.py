"""``tokenlabs dev``: the whole local stack in the foreground (what ``make run`` runs).

Starts the three plugin servers, simulated workers for every statically listed endpoint and Envoy; waits until
each is healthy; prints the gateway URL, the admin URL and the demo keys; stops everything on Ctrl-C/SIGTERM.
Exit status: 0 after a requested stop, 1 when a child failed (its last output is printed), 2 for bad config.

Ports come from the config (gateway.*, authz/extproc/epp.grpc_port and .metrics_port, pools.*.endpoints);
--port and --admin-port override the gateway's two.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

from authz.secrets import TENANT_ANNOTATION, TIER_ANNOTATION, api_key
from tokenlabs.cli.common import add_config_option, load_settings
from tokenlabs.devstack import ChildFailed, Stack, StackOptions
from tokenlabs.settings import ModelKind, Settings

READY_MARKER = "tokenlabs dev ready"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dev",
        help="run the local stack: Envoy, authz, extproc, epp and simulated workers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_option(parser)
    parser.add_argument(
        "--engine",
        choices=("sim", "none"),
        default="sim",
        help="workers to start for the pools' endpoints: the vLLM simulator, or none (bring your own)",
    )
    parser.add_argument("--port", type=tcp_port, default=None, help="gateway listener port (default: gateway.port)")
    parser.add_argument(
        "--admin-port", type=tcp_port, default=None, help="Envoy admin port (default: gateway.admin_port)"
    )
    parser.add_argument("--envoy-log-level", default="warning", help="Envoy's --log-level (default: warning)")
    parser.add_argument("--envoy-concurrency", type=int, default=2, help="Envoy worker threads (default: 2)")
    parser.add_argument(
        "--startup-timeout", type=float, default=60.0, help="seconds to wait for every part to be healthy"
    )
    parser.set_defaults(func=run)


def tcp_port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return int(text)


def with_gateway_ports(settings: Settings, port: int | None, admin_port: int | None) -> Settings:
    gateway = dataclasses.replace(
        settings.gateway,
        port=settings.gateway.port if port is None else port,
        admin_port=settings.gateway.admin_port if admin_port is None else admin_port,
    )
    return dataclasses.replace(settings, gateway=gateway)


def demo_keys(directory: Path) -> list[tuple[str, str, str]]:
    """(tenant, tier, key) for the Secrets in a local tenants folder, for the start-up banner only."""
    found = []
    for path in sorted(directory.glob("*.y*ml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not isinstance(document, dict) or document.get("kind") != "Secret":
                continue
            annotations = (document.get("metadata") or {}).get("annotations") or {}
            key = api_key(document)
            if isinstance(key, str):
                found.append(
                    (
                        str(annotations.get(TENANT_ANNOTATION, "?")),
                        str(annotations.get(TIER_ANNOTATION, "?")),
                        key,
                    )
                )
    return found


def banner(settings: Settings) -> str:
    gateway = settings.gateway
    lines = [
        "",
        "tokenlabs local stack is up",
        f"  gateway      http://{gateway.host}:{gateway.port}/v1   (OpenAI API; Authorization: Bearer <key>)",
        f"  envoy admin  http://{gateway.host}:{gateway.admin_port}",
    ]
    width = max(len(name) for name in settings.models)
    lines += [
        f"  {'models' if index == 0 else '':<12} {name:<{width}}  {model.kind}, pool {model.pool}"
        for index, (name, model) in enumerate(settings.models.items())
    ]
    if settings.tenants.kind == "directory":
        lines.append(f"  demo keys    (from {settings.tenants.directory})")
        lines += [f"    {tenant:<12} {tier:<10} {key}" for tenant, tier, key in demo_keys(settings.tenants.directory)]
    lines += [
        "  try:",
        *try_commands(settings),
        "Ctrl-C stops everything.",
        f"{READY_MARKER} gateway=http://{gateway.host}:{gateway.port}",
    ]
    return "\n".join(lines)


# Per model kind: the API path, the request fields after "model", and where curl puts the answer.
_TRY_REQUESTS = {
    ModelKind.CHAT: ("chat/completions", '"messages": [{"role": "user", "content": "Hello"}]', ""),
    ModelKind.SPEECH: ("audio/speech", '"input": "Hello", "voice": "alloy", "response_format": "wav"', " -o hello.wav"),
}


def try_commands(settings: Settings) -> list[str]:
    """curl lines for the first configured model of each kind: a chat completion, and speech saved as WAV."""
    first: dict[ModelKind, str] = {}
    for name, model in settings.models.items():
        first.setdefault(model.kind, name)
    base = f"http://{settings.gateway.host}:{settings.gateway.port}/v1"
    lines = []
    for kind, (path, fields, output) in _TRY_REQUESTS.items():
        if kind in first:
            lines += [
                f"    curl -s {base}/{path} -H 'Authorization: Bearer <key>' \\",
                f"      -H 'content-type: application/json' -d '{{\"model\": \"{first[kind]}\", {fields}}}'{output}",
            ]
    return lines


def run(args: argparse.Namespace) -> int:
    settings = with_gateway_ports(load_settings(args), args.port, args.admin_port)
    assert settings.source is not None
    options = StackOptions(
        config_path=settings.source,
        start_workers=args.engine == "sim",
        envoy_log_level=args.envoy_log_level,
        envoy_concurrency=args.envoy_concurrency,
        startup_timeout_s=args.startup_timeout,
        echo=lambda line: print(line, flush=True),
    )
    return asyncio.run(supervise(Stack(settings, options)))


async def supervise(stack: Stack) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    status = 0
    try:
        starting = asyncio.create_task(stack.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()
            print(banner(stack.settings), flush=True)
            failure = asyncio.create_task(stack.wait())
            await asyncio.wait({failure, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not stopping.done():
                raise failure.result()
            failure.cancel()
        else:
            starting.cancel()
    except ChildFailed as error:
        print(f"tokenlabs dev: {error}", file=sys.stderr, flush=True)
        status = 1
    finally:
        print("tokenlabs dev: stopping", flush=True)
        await stack.stop()
    return status
