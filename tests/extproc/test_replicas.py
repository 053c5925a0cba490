"""Two extproc server processes on one real Redis, 240 concurrent streaming exchanges driven over real gRPC as
Envoy drives them: the stored total equals the sum of the usage the (scripted) workers reported, exactly, and the
minute limit is never exceeded — also while the exchanges are in flight."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path

import grpc
import orjson
import pytest
import redis.asyncio as redis
import yaml
from envoy.service.ext_proc.v3 import external_processor_pb2 as extproc_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as extproc_grpc

from tests.helpers import request_body, request_headers, response_body, response_headers
from tests.redis_server import RedisServer
from tests.server_process import ServerProcess

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
TENANT = "replicated"
MINUTE_LIMIT = 3000
EXCHANGES = 240
MAX_TOKENS = 20


def write_config(workdir: Path, redis_url: str) -> Path:
    document = {
        "tiers": {"metered": {"tokens_per_minute": MINUTE_LIMIT, "tokens_per_day": 10**9}},
        "tenants": {"source": "directory", "directory": str(workdir)},
        "models": {LLAMA: {"pool": "p"}},
        "pools": {"p": {"endpoints": ["127.0.0.1:1"]}},
        "quota_store": redis_url,
        "quota_store_failure_mode": "closed",
        "extproc": {"drain_seconds": 1},
        "log_level": "warning",
    }
    path = workdir / "tokenlabs.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def replicas(tmp_path: Path, redis_server: RedisServer) -> Iterator[list[ServerProcess]]:
    config = write_config(tmp_path, redis_server.url)
    started = [ServerProcess("extproc", config, tmp_path / f"extproc-{i}.log") for i in range(2)]
    try:
        yield started
    finally:
        for server in started:
            server.stop()


def sse_stream(prompt_tokens: int, completion_tokens: int) -> list[bytes]:
    """A worker's stream for a client that did not ask for usage (the gateway asked): content, usage, [DONE]."""
    events: list[dict[str, object]] = [
        {"choices": [{"index": 0, "delta": {"content": f"w{i} "}}]} for i in range(completion_tokens)
    ]
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    events.append({"choices": [], "usage": {**usage, "total_tokens": prompt_tokens + completion_tokens}})
    return [b"data: " + orjson.dumps(event) + b"\n\n" for event in events] + [b"data: [DONE]\n\n"]


async def exchange(stub: extproc_grpc.ExternalProcessorStub, rng: random.Random) -> int | None:
    """One streamed request as Envoy sends it; the tokens the worker reported, or None when refused (429)."""
    call = stub.Process()
    headers = {":method": "POST", ":path": "/v1/chat/completions", "x-tenant-id": TENANT, "x-tenant-tier": "metered"}
    body = {"model": LLAMA, "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": MAX_TOKENS}
    await call.write(request_headers(headers))
    await call.read()
    await call.write(request_body(orjson.dumps(body)))
    answer: extproc_pb2.ProcessingResponse = await call.read()
    if answer.HasField("immediate_response"):
        assert answer.immediate_response.status.code == 429
        await call.done_writing()
        return None
    prompt, completion = rng.randint(1, 10), rng.randint(0, MAX_TOKENS)
    await call.write(response_headers({":status": "200", "content-type": "text/event-stream"}))
    await call.read()
    chunks = sse_stream(prompt, completion)
    forwarded = b""
    for index, chunk in enumerate(chunks):
        await call.write(response_body(chunk, end_of_stream=index == len(chunks) - 1))
        reply: extproc_pb2.ProcessingResponse = await call.read()
        mutation = reply.response_body.response.body_mutation
        forwarded += mutation.body if mutation.WhichOneof("mutation") == "body" else chunk
    await call.done_writing()
    assert b'"usage"' not in forwarded  # the client did not ask: the gateway's usage chunk never reaches it
    return prompt + completion


async def counter(client: redis.Redis, seconds: int) -> int:
    used = await client.hget(f"tokenlabs:{{tokens:{TENANT}}}:{seconds}", "n")
    return int(used or 0)


async def test_two_replicas_charge_exactly_the_reported_usage_within_the_limit(
    replicas: list[ServerProcess], redis_server: RedisServer
) -> None:
    for server in replicas:
        await server.wait_serving()
    rng = random.Random(7)
    client = redis.Redis.from_url(redis_server.url)
    channels = [grpc.aio.insecure_channel(server.address) for server in replicas]
    peak = 0
    try:
        stubs = [extproc_grpc.ExternalProcessorStub(channel) for channel in channels]
        tasks = [asyncio.ensure_future(exchange(stubs[i % 2], rng)) for i in range(EXCHANGES)]
        while not all(task.done() for task in tasks):
            peak = max(peak, await counter(client, 60))
            await asyncio.sleep(0.005)
        reported = [task.result() for task in tasks]
        admitted = [tokens for tokens in reported if tokens is not None]
        # Settlements are written right after each stream ends, off the request path.
        expected = sum(admitted)
        for _ in range(100):
            if await counter(client, 86_400) == expected:
                break
            await asyncio.sleep(0.05)
        assert await counter(client, 86_400) == expected
        assert 0 < len(admitted) < EXCHANGES  # the limit did refuse some
        assert peak <= MINUTE_LIMIT and await counter(client, 60) <= MINUTE_LIMIT
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))
        await client.aclose()
