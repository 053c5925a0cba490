"""The direct gRPC load generator: a process of its own, as cheap per call as grpc.aio allows.

    python -m bench.authz_load ADDRESS SERVER_PID TENANTS DURATION_S RUN [RUN ...]   # RUN: authz:8, health:64

Each RUN keeps CONCURRENCY calls in flight (one coroutine per call, one HTTP/2 connection) through a generic
``channel.unary_unary``: requests are pre-serialised bytes, responses are not deserialised. ``authz`` is ext_authz
``Check`` with an Envoy-shaped CheckRequest whose key is drawn at random from the TENANTS bench keys for every
call; a response counts as an error unless it is an allow (checked on its first bytes). ``health`` is
``grpc.health.v1.Health/Check`` on the same server: a no-op call through the same grpc.aio machinery, the floor
under ``authz``. After a short ramp, DURATION_S is measured: latency per call as this client sees it, and from
/proc the CPU time the server (all its threads, and its main thread alone), this client and the whole machine
spent. One JSON line per run.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.service.auth.v3 import attribute_context_pb2 as context_pb2
from envoy.service.auth.v3 import external_auth_pb2 as authz_pb2
from google.protobuf import timestamp_pb2

from bench import cpu
from bench.authz_tenants import bench_key
from bench.stack_config import chat_body
from bench.stages import CHAT_PATH

AUTHZ_CHECK = "/envoy.service.auth.v3.Authorization/Check"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
# CheckResponse with status {code: 0} (field 1, empty) followed by ok_response (field 3): an allow.
ALLOW_PREFIX = b"\n\x00\x1a"
SERVING = b"\x08\x01"  # HealthCheckResponse{status: SERVING}
CALL_TIMEOUT_S = 5.0
# Every coroutine has its first call in flight before the measured window opens.
RAMP_S = 0.1
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Method:
    path: str
    request: Callable[[], bytes]
    ok: Callable[[bytes], bool]


def check_request(key: str) -> authz_pb2.CheckRequest:
    """A CheckRequest shaped like the one Envoy sends for the gateway's chat request (same headers and fields)."""
    body = chat_body()
    headers = {
        ":authority": "127.0.0.1:8080",
        ":method": "POST",
        ":path": CHAT_PATH,
        ":scheme": "http",
        "authorization": f"Bearer {key}",
        "content-type": "application/json",
        "content-length": str(len(body)),
        "x-forwarded-proto": "http",
        "x-request-id": "6f1c7d52-2a8e-4a4b-9d1e-2b8f0c3e5a71",
    }
    http = context_pb2.AttributeContext.HttpRequest(
        id="10478135364473520384",
        method="POST",
        headers=headers,
        path=CHAT_PATH,
        host=headers[":authority"],
        scheme="http",
        size=len(body),
        protocol="HTTP/1.1",
    )
    return authz_pb2.CheckRequest(
        attributes=context_pb2.AttributeContext(
            source=context_pb2.AttributeContext.Peer(address=_address(51234)),
            destination=context_pb2.AttributeContext.Peer(address=_address(8080)),
            request=context_pb2.AttributeContext.Request(
                time=timestamp_pb2.Timestamp(seconds=1_790_000_000, nanos=123_456_000), http=http
            ),
            metadata_context=base_pb2.Metadata(),
        )
    )


def _address(port: int) -> address_pb2.Address:
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=port))


def authz_requests(tenants: int, seed: int = 1) -> Callable[[], bytes]:
    """Serialised CheckRequests for random bench keys: the template split around the key, the key spliced in."""
    placeholder = "#" * len(bench_key(0))
    head, *tails = check_request(placeholder).SerializeToString(deterministic=True).split(placeholder.encode())
    assert len(tails) == 1, "the placeholder key must occur exactly once"
    tail = tails[0]
    keys = [bench_key(index).encode() for index in range(tenants)]
    pick = random.Random(seed).randrange
    return lambda: head + keys[pick(tenants)] + tail


def methods(tenants: int) -> dict[str, Method]:
    return {
        "authz": Method(AUTHZ_CHECK, authz_requests(tenants), lambda raw: raw.startswith(ALLOW_PREFIX)),
        "health": Method(HEALTH_CHECK, lambda: b"", lambda raw: raw == SERVING),
    }


async def preflight(channel: grpc.aio.Channel, method: Method) -> None:
    """One call fully decoded: the cheap byte check in the loop is only valid if an allow really looks so."""
    raw = await channel.unary_unary(method.path)(method.request(), timeout=CALL_TIMEOUT_S)
    if method.path == AUTHZ_CHECK:
        response = authz_pb2.CheckResponse.FromString(raw)
        if response.status.code != 0 or not response.HasField("ok_response"):
            raise RuntimeError(f"authz preflight was not allowed: {response}")
    if not method.ok(raw):
        raise RuntimeError(f"{method.path}: unexpected answer {raw[:64]!r}")


def main_thread_ticks(pid: int) -> int:
    """CPU ticks of the process's main thread alone: the event loop, where every Python line of the server runs."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


@dataclass(frozen=True)
class Sample:
    """CPU ticks of the server (all threads, main thread) and seconds of this process; the machine's (busy, total)
    ticks; the time."""

    server: int
    server_main: int
    client: float
    machine: tuple[int, int]
    at: float

    @classmethod
    def take(cls, server_pid: int) -> Sample:
        times = os.times()
        return cls(
            cpu.process_ticks(server_pid),
            main_thread_ticks(server_pid),
            times.user + times.system,
            cpu.machine_ticks(),
            time.perf_counter(),
        )


async def run(
    channel: grpc.aio.Channel, method: Method, concurrency: int, duration_s: float, server_pid: int
) -> dict[str, Any]:
    call = channel.unary_unary(method.path)
    latencies: list[int] = []
    errors = 0
    stopping = False

    async def one_in_flight() -> None:
        nonlocal errors
        while not stopping:
            request = method.request()
            started = time.perf_counter_ns()
            try:
                response = await call(request, timeout=CALL_TIMEOUT_S)
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            latencies.append(time.perf_counter_ns() - started)
            if not method.ok(response):
                errors += 1

    tasks = [asyncio.create_task(one_in_flight()) for _ in range(concurrency)]
    try:
        await asyncio.sleep(RAMP_S)
        first, errors_before, before = len(latencies), errors, Sample.take(server_pid)
        await asyncio.sleep(duration_s)
        window, window_errors, after = latencies[first:], errors - errors_before, Sample.take(server_pid)
    finally:
        stopping = True
        await asyncio.gather(*tasks)
    return summarise(window, window_errors, before, after)


def summarise(latencies: list[int], errors: int, before: Sample, after: Sample) -> dict[str, Any]:
    calls = max(1, len(latencies))
    elapsed = after.at - before.at
    ordered = sorted(latencies) or [0]

    def percentile_ms(q: float) -> float:
        return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)] / 1e6, 3)

    busy, total = (a - b for a, b in zip(after.machine, before.machine, strict=True))
    server_s = (after.server - before.server) / CLOCK_TICKS
    return {
        "calls": len(latencies),
        "errors": errors,
        "duration_s": round(elapsed, 3),
        "calls_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": percentile_ms(0.50),
        "p90_ms": percentile_ms(0.90),
        "p99_ms": percentile_ms(0.99),
        "max_ms": percentile_ms(1.0),
        "server_cpu_us_per_call": round(server_s / calls * 1e6, 1),
        "server_cores": round(server_s / elapsed, 2),
        "server_main_thread_cores": round((after.server_main - before.server_main) / CLOCK_TICKS / elapsed, 2),
        "client_cpu_us_per_call": round((after.client - before.client) / calls * 1e6, 1),
        "machine_idle_percent": round(100 * (total - busy) / max(1, total), 1),
    }


async def main_async(address: str, server_pid: int, tenants: int, duration_s: float, runs: Sequence[str]) -> None:
    available = methods(tenants)
    async with grpc.aio.insecure_channel(address) as channel:
        for method in available.values():
            await preflight(channel, method)
        for spec in runs:
            name, _, concurrency = spec.partition(":")
            result = await run(channel, available[name], int(concurrency), duration_s, server_pid)
            print(json.dumps({"method": name, "concurrency": int(concurrency), **result}), flush=True)


def main(argv: Sequence[str]) -> int:
    if len(argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    address, server_pid, tenants, duration_s, *runs = argv
    asyncio.run(main_async(address, int(server_pid), int(tenants), float(duration_s), runs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
