"""Drive wrk with ``chat.lua`` and read back the JSON line its ``done()`` prints."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("chat.lua")
MARKER = "WRK_JSON "
INSTALL_HINT = "wrk is not installed: apt-get install -y wrk"
# wrk stops by itself after its duration; this is only the backstop for a wrk that hangs.
EXIT_GRACE_S = 15.0


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


def binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise FileNotFoundError(INSTALL_HINT)
    return found


def version() -> str:
    # wrk has no --version: -v prints its banner (and usage) and exits non-zero.
    banner = subprocess.run([binary(), "-v"], capture_output=True, text=True, check=False).stdout
    return banner.splitlines()[0].split(" [")[0] if banner else "unknown"


async def start(url: str, connections: int, duration_s: float, body: str, api_key: str) -> asyncio.subprocess.Process:
    """One thread per 8 connections (at most 2): 1 connection → 1 thread, 16 → 2."""
    threads = min(2, max(1, connections // 8))
    return await asyncio.create_subprocess_exec(
        binary(),
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={duration_s:g}s",
        "--timeout=5s",
        f"--script={SCRIPT}",
        url,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "BENCH_BODY": body, "BENCH_API_KEY": api_key},
    )


async def finish(process: asyncio.subprocess.Process, duration_s: float) -> WrkResult:
    """Wait for wrk to end by itself and parse its result line."""
    output, _ = await asyncio.wait_for(process.communicate(), duration_s + EXIT_GRACE_S)
    text = output.decode("utf-8", "replace")
    lines = [line for line in text.splitlines() if line.startswith(MARKER)]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed (exit {process.returncode}):\n{text}")
    return parse(lines[-1][len(MARKER) :])


async def stop(process: asyncio.subprocess.Process) -> None:
    """Kill wrk if it is still running (interrupted bench, overstayed run); a no-op once it has ended."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def parse(line: str) -> WrkResult:
    raw = json.loads(line)
    return WrkResult(
        requests=raw["requests"],
        duration_s=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1e3,
        p90_ms=raw["p90_us"] / 1e3,
        p99_ms=raw["p99_us"] / 1e3,
        max_ms=raw["max_us"] / 1e3,
        non_2xx=raw["non_2xx"],
        socket_errors=raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"],
    )
