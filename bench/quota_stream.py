"""Streamed chat requests as the client sees them: when each content token arrives, and whether the stream is whole.

A request's clock starts just before aiohttp sends it; every SSE line is stamped (``time.perf_counter``) as aiohttp
hands it over, so the time to first token (TTFT) is the first content token's stamp minus the start, and the chunk
delays are the differences between consecutive content tokens' stamps: what a client reading the stream observes,
Envoy's and the gateway's buffering included. A content token is a chunk whose ``delta.content`` is not empty (the
simulated workers send one token per chunk). Nothing here raises on a bad stream: failures are recorded, so that
the benchmark can count broken streams instead of stopping at the first.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
import orjson

# A stream of 64 tokens 10 ms apart takes under a second; this bounds one that hangs.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass
class StreamRecord:
    """One streamed request: its status, the arrival of each content token and what else the stream carried."""

    started: float
    status: int = 0
    ended: float = 0.0
    content_times: list[float] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    usage_chunks: int = 0
    done: bool = False
    events_after_done: int = 0
    error_type: str | None = None  # ``error.type`` of a JSON error answer (a 429 for tokens says "tokens")
    failure: str | None = None  # an exception or an unreadable event: the stream is broken

    @property
    def ttft_s(self) -> float | None:
        return self.content_times[0] - self.started if self.content_times else None

    @property
    def gaps_s(self) -> list[float]:
        times = self.content_times
        return [later - earlier for earlier, later in itertools.pairwise(times)]

    def feed(self, line: bytes, at: float) -> None:
        """Reads one SSE line that arrived at ``at``; only ``data:`` lines carry anything we count."""
        if not line.startswith(b"data:"):
            return
        data = line[5:].strip()
        if self.done:
            self.events_after_done += 1
        if data == b"[DONE]":
            self.done = True
            return
        event = orjson.loads(data)
        usage = event.get("usage")
        if isinstance(usage, dict):
            self.usage_chunks += 1
            self.usage = Usage(usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"])
        for choice in event.get("choices") or ():
            if choice.get("delta", {}).get("content"):
                self.content_times.append(at)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]


def stream_problems(record: StreamRecord, content_tokens: int, usage_asked: bool) -> list[str]:
    """Why an admitted (200) stream is not whole: ``content_tokens`` content chunks, a finish reason, ``[DONE]``
    last, and exactly one usage chunk if the client asked for usage, none if it did not."""
    problems = []
    if record.failure is not None:
        problems.append(record.failure)
    if len(record.content_times) != content_tokens:
        problems.append(f"{len(record.content_times)} content chunks, expected {content_tokens}")
    if record.finish_reason is None:
        problems.append("no finish_reason")
    if not record.done or record.events_after_done:
        problems.append("[DONE] missing or not last")
    if usage_asked and record.usage_chunks != 1:
        problems.append(f"{record.usage_chunks} usage chunks, asked for one")
    if not usage_asked and record.usage_chunks:
        problems.append("a usage chunk the client did not ask for")
    return problems


async def stream_once(session: aiohttp.ClientSession, url: str, api_key: str, body: bytes) -> StreamRecord:
    headers = {"authorization": f"Bearer {api_key}", "content-type": "application/json"}
    record = StreamRecord(started=time.perf_counter())
    try:
        async with session.post(url, data=body, headers=headers) as response:
            record.status = response.status
            if response.status != 200:
                document = orjson.loads(await response.read())
                record.error_type = document.get("error", {}).get("type")
            else:
                async for line in response.content:
                    record.feed(line, time.perf_counter())
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError, AttributeError, KeyError, TypeError) as error:
        # AttributeError/KeyError/TypeError: a JSON event or error answer of an unexpected shape.
        record.failure = f"{type(error).__name__}: {error}"
    record.ended = time.perf_counter()
    return record


def _session(connections: int) -> aiohttp.ClientSession:
    """``connections`` 0 means no limit; aiohttp's default of 100 would queue requests inside the client."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections), timeout=REQUEST_TIMEOUT)


async def closed_loop(
    url: str, api_key: str, body: bytes, concurrency: int, duration_s: float, stream_s: float
) -> list[StreamRecord]:
    """``concurrency`` clients, each sending the next request as soon as its stream ends, for ``duration_s``
    (requests started before the end are finished and counted). Client ``k`` starts ``k / concurrency`` of a
    stream's length (``stream_s``) after the first, so that requests arrive spread over time rather than in
    waves of ``concurrency`` at once (streams of equal length keep the spacing)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration_s

    async def client(session: aiohttp.ClientSession, number: int) -> list[StreamRecord]:
        await asyncio.sleep(number * stream_s / concurrency)
        records = []
        while loop.time() < deadline:
            records.append(await stream_once(session, url, api_key, body))
        return records

    async with _session(concurrency) as session:
        results = await asyncio.gather(*(client(session, number) for number in range(concurrency)))
    return [record for records in results for record in records]


async def all_at_once(url: str, api_key: str, bodies: Sequence[bytes]) -> list[StreamRecord]:
    """Every body as its own request on its own connection, all sent at once; records in the order of ``bodies``."""
    async with _session(0) as session:
        return list(await asyncio.gather(*(stream_once(session, url, api_key, body) for body in bodies)))


def peak_overlap(intervals: Sequence[tuple[float, float]]) -> int:
    """The most ``(start, end)`` intervals open at one instant (an interval ending as another starts is closed)."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak
