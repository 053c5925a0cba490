"""``tokenlabs serve <server>`` as a real child process, for tests of whole servers (replicas, sources, signals)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.helpers import REPO
from tokenlabs.devstack import free_ports


class ServerProcess:
    """One server on free ports, its output in ``log``; ``stop()`` always leaves no process behind."""

    def __init__(self, server: str, config: Path, log: Path, env: Mapping[str, str] | None = None) -> None:
        self.log = log
        self.grpc_port, self.metrics_port = free_ports(2)
        prefix = f"TOKENLABS_{server.upper()}__"
        environment = {
            **os.environ,
            **(env or {}),
            f"{prefix}GRPC_PORT": str(self.grpc_port),
            f"{prefix}METRICS_PORT": str(self.metrics_port),
        }
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tokenlabs", "serve", server, "--config", str(config)],
                env=environment,
                cwd=REPO,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    async def health(self) -> int | None:
        """The overall health status, or ``None`` while the port does not answer."""
        async with grpc.aio.insecure_channel(self.address) as channel:
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.aio.AioRpcError:
                return None
            return int(reply.status)

    async def wait_serving(self, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while await self.health() != health_pb2.HealthCheckResponse.SERVING:
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"not SERVING after {timeout_s} s:\n{self.log.read_text()}"
            await asyncio.sleep(0.1)

    def stop(self) -> int:
        self.process.terminate()
        try:
            return self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
