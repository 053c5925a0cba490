"""The exactness run: ``EXACT_REQUESTS`` streamed requests sent at once by one tenant whose tier allows
``TOKENS_PER_MINUTE`` tokens a minute, through the gateway's Envoy to two extproc replicas on one Redis.

The requests vary in prompt length, ``max_tokens`` (below and above what the workers generate, so what is reserved
at admission is not what is charged) and in whether they ask for ``stream_options.include_usage``: every other one
does, and for the rest the gateway asks in their place and removes the usage chunk again. All of them would use
more than the limit, so some must be refused. Every prompt is made of words that the gateway's estimate (bytes/4)
does not undercount, so that each request reserves at least what it is charged: a charge above its reservation is
added after admission and may carry the counter past the limit (see ``extproc/quota.py``), which would blur the
check of what admission itself guarantees across replicas.

Once every charge is written (the counters have been still for ``QUIET_S``), three totals must be equal:

- stored: the tenant's minute counter in Redis, read raw for the window the run was admitted in (the run waits for
  a window with ``HEADROOM_S`` left, so that no charge falls after it ends), and the day counter;
- reported by the workers: their own counters of prompt and generated tokens, before and after the run. This is
  the reference: it is counted where the tokens are made, covers the requests whose usage chunk the gateway removed
  as well as the others, and depends neither on the gateway's reading of the stream nor on the client;
- seen by the client: the usage chunk of each request that asked for it; for the others, the content chunks it
  received plus the prompt tokens of the simulator's tokenizer (which every usage chunk received must confirm).

And the limit must hold: the minute counter, sampled every ``SAMPLE_EVERY_S`` while requests are in flight, and
at the end, never exceeds it. Refusals must be 429s for tokens; every admitted stream must be whole.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as redis

from bench.quota_counters import (
    DAY,
    MINUTE,
    headroom_wait,
    host_requests,
    read_counter,
    redis_now,
    sample_peak,
    settled,
    window_index,
    worker_tokens,
)
from bench.quota_stack import EXTPROC_CLUSTER, METERED_KEY, METERED_TENANT, STREAM_TOKENS, TOKENS_PER_MINUTE, QuotaStack
from bench.quota_stream import StreamRecord, all_at_once, peak_overlap, stream_problems
from bench.stack_config import MODEL
from engine.sim.tokens import ChatMessage, TextPart, chat_prompt_tokens

EXACT_REQUESTS = 256
MAX_TOKENS_CYCLE = (8, 16, 24, 100)
# Words of four to six letters: one token each for the simulator, at least one for the gateway's estimate (bytes/4).
PROMPT_WORDS = ("stream", "tokens", "quota", "reply", "limit", "window", "charge", "usage", "worker", "proxy", "redis")
HEADROOM_S = 10.0
SAMPLE_EVERY_S = 0.005
QUIET_S = 1.0
SETTLE_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class ExactRequest:
    body: bytes
    usage_asked: bool
    prompt_tokens: int  # as the simulated worker counts them
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def exact_requests(count: int = EXACT_REQUESTS) -> list[ExactRequest]:
    requests = []
    for index in range(count):
        text = "Please stream " + " ".join(PROMPT_WORDS[(index + j) % len(PROMPT_WORDS)] for j in range(3 + index % 7))
        max_tokens = MAX_TOKENS_CYCLE[index % len(MAX_TOKENS_CYCLE)]
        usage_asked = index % 2 == 1
        body: dict[str, Any] = {
            "model": MODEL,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": max_tokens,
            "stream": True,
        }
        if usage_asked:
            body["stream_options"] = {"include_usage": True}
        prompt = len(chat_prompt_tokens([ChatMessage("user", (TextPart(text),))]))
        requests.append(ExactRequest(orjson.dumps(body), usage_asked, prompt, min(max_tokens, STREAM_TOKENS)))
    return requests


@dataclass(frozen=True)
class Observed:
    """What the run saw, before any verdict."""

    records: list[StreamRecord]
    window: int  # minute window index when the requests were sent
    window_after: int  # ... and once the counters had settled
    minute: int  # tokens stored for ``window``
    day: int
    samples: list[int]  # the minute counter while requests were in flight
    workers_prompt: int
    workers_generation: int
    replica_streams: dict[str, int]
    failovers: int  # times a server said it stopped counting in Redis during the run
    waited_s: float
    burst_s: float


def client_view(requests: Sequence[ExactRequest], records: Sequence[StreamRecord]) -> dict[str, Any]:
    """Admitted, refused and broken requests and the tokens the client saw for the admitted ones."""
    admitted = refused = seen = 0
    broken: list[str] = []
    for number, (request, record) in enumerate(zip(requests, records, strict=True)):
        if record.status == 429 and record.error_type == "tokens" and record.failure is None:
            refused += 1
            continue
        if record.status != 200:
            broken.append(f"request {number}: status {record.status} {record.error_type or record.failure or ''}")
            continue
        admitted += 1
        problems = stream_problems(record, request.completion_tokens, request.usage_asked)
        if record.usage is not None and request.usage_asked:
            seen += record.usage.total_tokens
            expected = (request.prompt_tokens, request.completion_tokens, request.total_tokens)
            got = (record.usage.prompt_tokens, record.usage.completion_tokens, record.usage.total_tokens)
            if got != expected:
                problems.append(f"usage {got}, the simulator's tokenizer says {expected}")
        else:
            seen += request.prompt_tokens + len(record.content_times)
        broken += [f"request {number}: {problem}" for problem in problems]
    intervals = [(record.started, record.ended) for record in records if record.status == 200]
    return {
        "requests": len(records),
        "admitted": admitted,
        "refused_429": refused,
        "usage_asked": sum(request.usage_asked for request in requests),
        "peak_concurrent_admitted_streams": peak_overlap(intervals),
        "tokens_seen_by_client": seen,
        "broken": broken,
    }


def verdict(requests: Sequence[ExactRequest], observed: Observed, limit: int) -> dict[str, Any]:
    """The run's numbers and its checks; ``ok`` when every check holds."""
    view = client_view(requests, observed.records)
    reported = observed.workers_prompt + observed.workers_generation
    peak = max(observed.samples, default=0)
    checks = {
        "stored_equals_reported": observed.minute == reported,
        "day_counter_equals_reported": observed.day == reported,
        "client_equals_reported": view["tokens_seen_by_client"] == reported,
        "peak_within_limit": peak <= limit,
        "final_within_limit": observed.minute <= limit,
        "one_minute_window": observed.window == observed.window_after,
        "some_refused_some_admitted": view["admitted"] > 0 and view["refused_429"] > 0,
        "both_replicas_served": len(observed.replica_streams) == 2 and min(observed.replica_streams.values()) > 0,
        "no_store_failover": observed.failovers == 0,
        "no_broken_stream": not view["broken"],
    }
    return {
        "ok": all(checks.values()),
        "checks": checks,
        "limit_tokens_per_minute": limit,
        **view,
        "stored_minute": observed.minute,
        "stored_day": observed.day,
        "reported_by_workers": reported,
        "reported_prompt_tokens": observed.workers_prompt,
        "reported_completion_tokens": observed.workers_generation,
        "peak_in_flight": peak,
        "counter_samples": len(observed.samples),
        "extproc_streams_per_replica": observed.replica_streams,
        "store_failovers": observed.failovers,
        "window_index": observed.window,
        "waited_for_window_s": round(observed.waited_s, 1),
        "burst_s": round(observed.burst_s, 2),
    }


async def observe(stack: QuotaStack, client: redis.Redis, requests: Sequence[ExactRequest]) -> Observed:
    waited = headroom_wait(await redis_now(client), HEADROOM_S)
    await asyncio.sleep(waited)
    now = await redis_now(client)
    window, day_window = window_index(now, MINUTE), window_index(now, DAY)
    if (await read_counter(client, METERED_TENANT, MINUTE)).in_window(window):
        raise RuntimeError(f"{METERED_TENANT} already has tokens in this minute: the run would not be exact")
    metrics_urls = stack.worker_metrics_urls()
    workers_before = await worker_tokens(metrics_urls)
    hosts_before = await host_requests(stack.gateway.admin_url, EXTPROC_CLUSTER)
    logged_before = len(stack.log.lines)
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_peak(client, METERED_TENANT, window, stop, SAMPLE_EVERY_S))
    started = time.perf_counter()
    try:
        records = await all_at_once(stack.gateway.url, METERED_KEY, [request.body for request in requests])
    finally:
        stop.set()
        samples = await sampler
    burst_s = time.perf_counter() - started
    minute, day = await settled(client, METERED_TENANT, QUIET_S, SETTLE_TIMEOUT_S)
    window_after = window_index(await redis_now(client), MINUTE)
    workers = await worker_tokens(metrics_urls) - workers_before
    hosts_after = await host_requests(stack.gateway.admin_url, EXTPROC_CLUSTER)
    streams = {host: hosts_after.get(host, 0) - hosts_before.get(host, 0) for host in stack.extproc_replicas}
    return Observed(
        records,
        window,
        window_after,
        minute.in_window(window),
        day.in_window(day_window),
        samples,
        workers.prompt,
        workers.generation,
        streams,
        stack.log.failovers(logged_before),
        waited,
        burst_s,
    )


async def exactness_run(stack: QuotaStack, redis_url: str) -> dict[str, Any]:
    requests = exact_requests()
    client = redis.Redis.from_url(redis_url)
    try:
        observed = await observe(stack, client, requests)
    finally:
        await client.aclose()
    return verdict(requests, observed, TOKENS_PER_MINUTE)
