"""Quota benchmark: what the gateway adds to a streamed answer, and whether its token quotas are exact across
replicas.

One stack (``bench.quota_stack``): workers streaming 64 tokens 10 ms apart after a 20 ms time to first token, the
gateway with two extproc replicas counting tokens in one real Redis, and plain Envoy to the same workers.

- Streaming overhead: a Python client (aiohttp) keeps 16, then 1, streams in flight for the run's duration (their
  starts spread over a stream's length) against plain Envoy and against the gateway (the pro demo tenant, whose
  limits are out of reach), in turn, the order rotated each round; per run it measures each stream's time to first
  content token and the delays between consecutive content chunks as it receives them (``bench.quota_stream``),
  and checks every stream is whole (64 content chunks, finish, ``[DONE]``, and no usage chunk: the client does not
  ask for one, so the gateway must remove the one it asked for). Reported: p50/p99 of both for each target, the
  gateway's difference and ratio per round and their medians (``bench.quota_report``).
- Exactness (``bench.quota_exact``): 256 streamed requests at once from a tenant whose tier allows 8,000 tokens a
  minute; the Redis counter must equal the usage the workers reported, and never exceed the limit.

    python -m bench.quota            # 3 rounds x 10 s, writes bench/results/quota.json
    python -m bench.quota --quick    # 1 round x 2 s: a check, not a measurement
Needs redis-server (apt-get install -y redis-server). Exit status 1 when a stream is broken or a check of the
exactness run fails.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import cpu
from bench.envoy_rounds import SETTLE_S, WARMUP_S, rotated
from bench.machine import machine_facts
from bench.options import benchmark_parser, rounds_and_duration
from bench.quota_exact import EXACT_REQUESTS, exactness_run
from bench.quota_report import StreamRun, format_summary, overhead, stream_run
from bench.quota_stack import ITL_MS, STREAM_TOKENS, TOKENS_PER_MINUTE, TTFT_MS, QuotaStack, build
from bench.quota_stream import closed_loop
from bench.stack_config import MODEL, PRO_KEY, REPO
from bench.stages import Target
from tests.redis_server import RedisServer, redis_server_path

DEFAULT_JSON = REPO / "bench" / "results" / "quota.json"
CONCURRENCIES = (16, 1)
# Warning and error lines of the children kept in the results.
KEPT_WARNINGS = 20
# How long a stream takes at the worker: the spacing of the clients' start (see ``closed_loop``).
STREAM_S = (TTFT_MS + (STREAM_TOKENS - 1) * ITL_MS) / 1000
STREAM_BODY = json.dumps(
    {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Stream a reply through the gateway."}],
        "max_tokens": STREAM_TOKENS,
        "stream": True,
    }
).encode()


@dataclass(frozen=True)
class Plan:
    rounds: int
    duration_s: float
    envoy_concurrency: int
    json_path: Path


def parse_args(argv: Sequence[str] | None) -> Plan:
    parser = benchmark_parser(
        "python -m bench.quota",
        __doc__,
        DEFAULT_JSON,
        rounds_help="round-robin passes over both targets",
        duration_help="seconds per streaming run",
        quick_help="1 round of 2 s runs",
    )
    args = parser.parse_args(argv)
    rounds, duration = rounds_and_duration(parser, args, quick=(1, 2.0), min_duration_s=1)
    return Plan(rounds, duration, args.envoy_concurrency, args.json)


def conditions(plan: Plan) -> dict[str, Any]:
    return {
        **machine_facts(uses_wrk=False),
        "redis_version": redis_version(),
        "envoy_concurrency": plan.envoy_concurrency,
        "rounds": plan.rounds,
        "duration_s": plan.duration_s,
        "concurrencies": list(CONCURRENCIES),
        "model": MODEL,
        "stream_tokens": STREAM_TOKENS,
        "worker_ttft_ms": TTFT_MS,
        "worker_itl_ms": ITL_MS,
        "exactness_requests": EXACT_REQUESTS,
        "exactness_limit_tokens_per_minute": TOKENS_PER_MINUTE,
        "order": "per round: c16 then c1, each over both targets; target order rotates by one each round",
    }


def redis_version() -> str:
    # "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=..."
    text = subprocess.run([str(redis_server_path()), "--version"], capture_output=True, text=True, check=True).stdout
    return " ".join(text.split()[:3])


async def measure(
    stack: QuotaStack, target: Target, round_number: int, concurrency: int, duration_s: float
) -> StreamRun:
    before = cpu.snapshot(stack.pids(), own="bench")
    records = await closed_loop(target.url, PRO_KEY, STREAM_BODY, concurrency, duration_s, STREAM_S)
    shares = cpu.shares(before, cpu.snapshot(stack.pids(), own="bench"))
    return stream_run(round_number, target.name, concurrency, records, STREAM_TOKENS, shares)


async def streaming_rounds(plan: Plan, stack: QuotaStack) -> list[StreamRun]:
    for target in stack.targets:  # not measured: opens connections and gRPC streams before the first timed run
        await closed_loop(target.url, PRO_KEY, STREAM_BODY, CONCURRENCIES[0], WARMUP_S, STREAM_S)
    runs = []
    for index in range(plan.rounds):
        for concurrency in CONCURRENCIES:
            for target in rotated(stack.targets, index):
                await asyncio.sleep(SETTLE_S)
                run = await measure(stack, target, index + 1, concurrency, plan.duration_s)
                runs.append(run)
                print(progress(run, plan.rounds), flush=True)
    return runs


def progress(run: StreamRun, rounds: int) -> str:
    return (
        f"round {run.round}/{rounds} c={run.concurrency:<2} {run.target:<12} {run.requests:5} streams  "
        f"TTFT p50 {run.ttft_p50_ms:6.2f} p99 {run.ttft_p99_ms:6.2f} ms  "
        f"chunk p50 {run.chunk_p50_ms:5.2f} p99 {run.chunk_p99_ms:6.2f} ms  broken {run.broken}"
    )


async def bench(plan: Plan) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    # SIGTERM takes the same way out as Ctrl-C: cancel, so that every `finally` stops what it started.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    facts = conditions(plan)
    redis_server = RedisServer()
    with tempfile.TemporaryDirectory(prefix="tokenlabs-bench-") as tmp:
        try:
            redis_server.start()
            stack = build(Path(tmp), redis_server.url, plan.envoy_concurrency)
            try:
                await stack.stack.start()
                runs = await streaming_rounds(plan, stack)
                print(f"exactness run: {EXACT_REQUESTS} streams at once (waits for a minute with room)", flush=True)
                exact = await exactness_run(stack, redis_server.url)
            finally:
                await stack.stack.stop()
        finally:
            redis_server.stop()
    document = {
        "conditions": facts,
        "streaming": overhead(runs, CONCURRENCIES),
        "exactness": exact,
        "warnings_logged": stack.log.lines[:KEPT_WARNINGS],
        "rounds": [run.raw() for run in runs],
    }
    print("\n" + format_summary(document), flush=True)
    return document


def main(argv: Sequence[str] | None = None) -> int:
    plan = parse_args(argv)
    if redis_server_path() is None:
        print("quota benchmark: redis-server is not installed: apt-get install -y redis-server", file=sys.stderr)
        return 2
    try:
        document = asyncio.run(bench(plan))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("quota benchmark: interrupted; everything it started has been stopped", file=sys.stderr)
        return 130
    except RuntimeError as error:  # a child that failed to start or died, Redis that did not start
        print(f"quota benchmark failed: {error}", file=sys.stderr)
        return 1
    plan.json_path.parent.mkdir(parents=True, exist_ok=True)
    plan.json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {plan.json_path}")
    broken = sum(run["broken"] for run in document["rounds"])
    if broken or not document["exactness"]["ok"]:
        print(f"quota benchmark: {broken} broken streams; exactness ok: {document['exactness']['ok']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
