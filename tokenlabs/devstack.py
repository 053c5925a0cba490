"""The local stack as supervised child processes: Envoy, the three plugin servers and the workers: simulated ones,
and optionally torch-engine workers (``tokenlabs engine serve``) for some pools.

Used by ``tokenlabs dev``, the integration tests and the benchmarks. Guarantees: every child gets SIGTERM when the
supervisor stops and (on Linux) when the supervisor dies, so nothing outlives it; a child that exits early stops
the whole stack with its last output shown; readiness means gRPC health SERVING for the plugin servers, ``/health``
200 for workers and ``/ready`` 200 on Envoy's admin port.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import ctypes
import logging
import random
import signal
import socket
import sys
import tempfile
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenlabs.envoy_config import find_envoy, render_bootstrap
from tokenlabs.server_settings import ServerSettings
from tokenlabs.settings import ModelKind, Settings

log = logging.getLogger(__name__)

ReadyCheck = Callable[[], Awaitable[bool]]
OUTPUT_TAIL_LINES = 40
PR_SET_PDEATHSIG = 1
# Listening ports for the local stack and the tests are drawn from here up to the kernel's ephemeral range.
FIRST_LISTEN_PORT = 20000
LINUX_EPHEMERAL_START = 32768


def die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGTERM if the supervisor goes away."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that are free now; held open together, so none is handed out twice.

    They come from below the kernel's ephemeral range: a port there that is free now can be taken by any outgoing
    connection (a scraper's, a client's) before the child that is to listen on it binds it, which made start-ups
    fail with "address already in use" now and then. Raises ``OSError`` when too few are free.
    """
    candidates = range(FIRST_LISTEN_PORT, max(FIRST_LISTEN_PORT, ephemeral_range_start()))
    ports: list[int] = []
    with contextlib.ExitStack() as held:
        for candidate in random.sample(candidates, k=min(len(candidates), count + 64)):
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            ports.append(candidate)
            if len(ports) == count:
                return ports
    raise OSError(f"fewer than {count} free loopback ports below the ephemeral range")


def ephemeral_range_start() -> int:
    """The first port of the kernel's range for outgoing connections (Linux's default when it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return LINUX_EPHEMERAL_START


def on_free_ports(document: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a config document with the gateway, the plugin servers and every pool endpoint moved to free
    loopback ports, so that a second stack (a test's, a benchmark's) can run beside ``make run``."""
    moved = copy.deepcopy(dict(document))
    pools = moved.get("pools", {}).values()
    ports = iter(free_ports(2 + 2 * 3 + sum(len(pool.get("endpoints", ())) for pool in pools)))
    moved["gateway"] = {**moved.get("gateway", {}), "host": "127.0.0.1", "port": next(ports), "admin_port": next(ports)}
    for server in ("authz", "extproc", "epp"):
        moved[server] = {**moved.get(server, {}), "grpc_port": next(ports), "metrics_port": next(ports)}
    for pool in pools:
        if "endpoints" in pool:
            pool["endpoints"] = [f"127.0.0.1:{next(ports)}" for _ in pool["endpoints"]]
    return moved


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    ready: ReadyCheck
    process: asyncio.subprocess.Process | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=OUTPUT_TAIL_LINES))
    pump: asyncio.Task[None] | None = None


class ChildFailed(RuntimeError):
    def __init__(self, child: Child, reason: str) -> None:
        self.child = child
        tail = "\n".join(f"    {line}" for line in child.tail) or "    (no output)"
        super().__init__(f"{child.name} {reason}; its last output:\n{tail}")


def grpc_serving(server: ServerSettings) -> ReadyCheck:
    async def check() -> bool:
        async with grpc.aio.insecure_channel(server.grpc_address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
            except grpc.aio.AioRpcError:
                return False
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    return check


def http_ok(*urls: str) -> ReadyCheck:
    async def check() -> bool:
        timeout = aiohttp.ClientTimeout(total=1.0)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                for url in urls:
                    async with session.get(url) as response:
                        if response.status != 200:
                            return False
        except (aiohttp.ClientError, TimeoutError):
            return False
        return True

    return check


@dataclass(frozen=True)
class TorchWorkers:
    """The pools whose endpoints ``tokenlabs engine serve`` serves (one process per endpoint, each serving the
    pool's model names) instead of the simulator: ``model`` (``smollm2`` or ``tiny``) read from ``model_dir``, the
    checkpoint the caller has already made sure of (so the workers never race to make it), with ``threads`` torch
    threads each."""

    pools: tuple[str, ...]
    model: str
    model_dir: Path
    threads: int = 1


def check_torch_pools(settings: Settings, pools: Sequence[str]) -> None:
    """Raises ``ValueError`` naming the problem unless every pool exists, lists static endpoints and serves only
    chat models (the torch engine serves text; speech stays on the simulator)."""
    for name in pools:
        pool = settings.pools.get(name)
        if pool is None:
            raise ValueError(f"pool {name!r} is not in the config (pools: {', '.join(settings.pools)})")
        if not pool.endpoints:
            raise ValueError(f"pool {name!r} lists no static endpoints to start workers on")
        kinds = {model.kind for model in settings.models.values() if model.pool == name}
        if kinds != {ModelKind.CHAT}:
            found = ", ".join(sorted(kinds)) or "no models"
            raise ValueError(f"pool {name!r} must serve only chat models to run on the torch engine, has {found}")


@dataclass(frozen=True)
class StackOptions:
    config_path: Path
    start_workers: bool = True
    torch_workers: TorchWorkers | None = None
    envoy_log_level: str = "warning"
    envoy_concurrency: int = 2
    startup_timeout_s: float = 60.0
    stop_timeout_s: float = 15.0
    echo: Callable[[str], None] = print


def plan(settings: Settings, options: StackOptions, envoy_config: Path) -> list[Child]:
    """The children in start order; Envoy last so that it never routes to a server that is not up yet."""
    python = sys.executable
    config = str(options.config_path)
    children = [
        Child(name, [python, "-m", "tokenlabs", "serve", name, "--config", config], grpc_serving(server))
        for name, server in (("authz", settings.authz), ("extproc", settings.extproc), ("epp", settings.epp))
    ]
    if options.start_workers:
        torch = options.torch_workers
        simulated = [pool for pool in settings.pools if torch is None or pool not in torch.pools]
        if any(settings.pools[pool].endpoints for pool in simulated):
            children.append(worker_child(settings, simulated))
        if torch is not None:
            children += torch_worker_children(settings, torch)
    gateway = settings.gateway
    admin_url = f"http://{gateway.host}:{gateway.admin_port}"
    children.append(envoy_child("envoy", envoy_config, admin_url, options.envoy_log_level, options.envoy_concurrency))
    return children


def envoy_child(name: str, config: Path, admin_url: str, log_level: str, concurrency: int) -> Child:
    """An Envoy process for ``config``, ready when its admin ``/ready`` answers 200."""
    argv = [
        find_envoy(),
        "-c",
        str(config),
        "--disable-hot-restart",  # with hot restart, Envoy dies with the script that started it in the background
        "--log-level",
        log_level,
        "--concurrency",
        str(concurrency),
    ]
    return Child(name, argv, http_ok(f"{admin_url}/ready"))


def served_names(settings: Settings, pool: str) -> list[str]:
    return [name for name, model in settings.models.items() if model.pool == pool]


def worker_child(settings: Settings, pools: Collection[str] | None = None) -> Child:
    """One simulator process serves every statically listed endpoint of ``pools`` (all by default), each on its
    own port."""
    argv = [sys.executable, "-m", "tokenlabs", "engine", "sim"]
    health_urls = []
    for pool in settings.pools.values():
        if pools is not None and pool.name not in pools:
            continue
        served = ",".join(served_names(settings, pool.name))
        for endpoint in pool.endpoints:
            argv += ["--worker", f"{served}={endpoint.address}"]
            health_urls.append(f"http://{endpoint.address}/health")
    for key, value in settings.engine_sim.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return Child("workers", argv, http_ok(*health_urls))


def torch_worker_children(settings: Settings, torch: TorchWorkers) -> list[Child]:
    """One ``tokenlabs engine serve`` process per endpoint of the torch pools, ready when its ``/health`` answers
    (it listens once the model is loaded)."""
    children = []
    for pool_name in torch.pools:
        for number, endpoint in enumerate(settings.pools[pool_name].endpoints, start=1):
            argv = [
                sys.executable, "-m", "tokenlabs", "engine", "serve",
                "--model", torch.model, "--model-dir", str(torch.model_dir),
                "--served-model-name", *served_names(settings, pool_name),
                "--host", endpoint.host, "--port", str(endpoint.port), "--threads", str(torch.threads),
            ]  # fmt: skip
            name = f"torch-{pool_name}-{number}"
            children.append(Child(name, argv, http_ok(f"http://{endpoint.address}/health")))
    return children


class Stack:
    """Start with ``await stack.start()``; ``await stack.wait()`` returns when a child dies; always ``stop()``."""

    def __init__(self, settings: Settings, options: StackOptions) -> None:
        self.settings = settings
        self.options = options
        self._workdir = tempfile.TemporaryDirectory(prefix="tokenlabs-dev-")
        envoy_config = Path(self._workdir.name) / "envoy.yaml"
        envoy_config.write_text(render_bootstrap(settings), encoding="utf-8")
        self.children = plan(settings, options, envoy_config)

    async def start(self) -> None:
        for child in self.children:
            await self._spawn(child)
        deadline = asyncio.get_running_loop().time() + self.options.startup_timeout_s
        pending = list(self.children)
        while pending:
            for child in list(pending):
                self._raise_if_exited(child)
                if await child.ready():
                    pending.remove(child)
            if pending and asyncio.get_running_loop().time() > deadline:
                raise ChildFailed(pending[0], f"was not ready within {self.options.startup_timeout_s:.0f}s")
            if pending:
                await asyncio.sleep(0.1)

    async def _spawn(self, child: Child) -> None:
        child.process = await asyncio.create_subprocess_exec(
            *child.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=die_with_parent,
            # Own session: a terminal's Ctrl-C reaches only the supervisor, which stops children in order.
            start_new_session=True,
        )
        child.pump = asyncio.create_task(self._pump(child), name=f"output-{child.name}")

    async def _pump(self, child: Child) -> None:
        assert child.process is not None and child.process.stdout is not None
        width = max(len(c.name) for c in self.children)
        async for raw in child.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            child.tail.append(line)
            self.options.echo(f"{child.name:<{width}} | {line}")

    @staticmethod
    def _raise_if_exited(child: Child) -> None:
        if child.process is not None and child.process.returncode is not None:
            raise ChildFailed(child, f"exited with code {child.process.returncode}")

    async def wait(self) -> ChildFailed:
        """Block until any child exits; returns the failure to report."""
        waits = {asyncio.ensure_future(child.process.wait()): child for child in self.children if child.process}
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for future in waits:
            future.cancel()
        child = waits[next(iter(done))]
        if child.pump is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(child.pump, 2.0)
        return ChildFailed(child, f"exited with code {child.process.returncode if child.process else '?'}")

    async def stop(self) -> None:
        """SIGTERM in reverse start order (Envoy first, so no new traffic), then SIGKILL whoever lingers."""
        for child in reversed(self.children):
            if child.process is not None and child.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.terminate()
        for child in reversed(self.children):
            if child.process is None:
                continue
            try:
                await asyncio.wait_for(child.process.wait(), self.options.stop_timeout_s)
            except TimeoutError:
                log.warning("child did not stop in time; killing it", extra={"child": child.name})
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
                await child.process.wait()
            if child.pump is not None:
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(child.pump, 2.0)
        self._workdir.cleanup()
