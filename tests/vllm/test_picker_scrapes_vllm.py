"""The endpoint picker scrapes the real vLLM's ``/metrics``: ready, and queueing and KV-cache use as vLLM reports them.

The picker exports what it last scraped per endpoint, labelled ``{pool, endpoint}``: ``tokenlabs_epp_endpoint_ready``
(1 while its metrics are fresh), ``..._waiting_requests``, ``..._running_requests``, ``..._kv_cache_usage`` (0-1),
and ``tokenlabs_epp_scrapes_total{result=ok|error}``. The load goes straight to vLLM: this is about what the picker
reads, and the gateway's own counters stay out of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import openai

from tests.helpers import metric, sample
from tests.integration.stack import RunningStack
from tests.vllm.config import POOL
from tests.vllm.load import wave
from tests.vllm.metrics import scrape, scrape_until
from tests.vllm.server import MAX_MODEL_LEN, MAX_NUM_SEQS, VllmServer

READY = "tokenlabs_epp_endpoint_ready"
WAITING = "tokenlabs_epp_endpoint_waiting_requests"
RUNNING = "tokenlabs_epp_endpoint_running_requests"
KV_USAGE = "tokenlabs_epp_endpoint_kv_cache_usage"
SCRAPES = "tokenlabs_epp_scrapes_total"
# Ten long requests against four sequence slots and a 16-block KV cache: vLLM queues and fills its cache.
WAVE_REQUESTS = 10
PROMPT_TOKENS = 600
MAX_TOKENS = 400
assert PROMPT_TOKENS + MAX_TOKENS <= MAX_MODEL_LEN, "vLLM would refuse the requests"
# Waves go on until both sides have been seen loaded; one wave takes 3-10 s here (the VM stalls under vLLM's
# prefill for up to seconds at a time), so this is many waves.
LOAD_DEADLINE_S = 180.0
POLL_INTERVAL_S = 0.2


@dataclass(frozen=True)
class Reading:
    """running, waiting, kv usage as one side saw them."""

    running: float
    waiting: float
    kv_usage: float

    def loaded(self) -> tuple[bool, bool, bool]:
        return self.running > 0, self.waiting > 0, self.kv_usage > 0


def vllm_reading(text: str) -> Reading:
    return Reading(
        metric(text, "vllm:num_requests_running"),
        metric(text, "vllm:num_requests_waiting"),
        metric(text, "vllm:kv_cache_usage_perc"),
    )


def picker_reading(text: str, endpoint: str) -> Reading:
    values = []
    for name in (RUNNING, WAITING, KV_USAGE):
        value = sample(text, name, pool=POOL, endpoint=endpoint)
        assert value is not None, f"epp exports no {name}{{pool={POOL!r}, endpoint={endpoint!r}}}"
        values.append(value)
    return Reading(*values)


@dataclass
class Seen:
    """Every reading of one side during the load, and which of running / waiting / kv it has seen above 0."""

    readings: list[Reading]

    def loaded(self) -> tuple[bool, bool, bool]:
        seen = [reading.loaded() for reading in self.readings]
        return any(r for r, _, _ in seen), any(w for _, w, _ in seen), any(k for _, _, k in seen)

    def summary(self) -> str:
        return (
            f"{len(self.readings)} readings, max running {max(r.running for r in self.readings):g}, "
            f"waiting {max(r.waiting for r in self.readings):g}, kv {max(r.kv_usage for r in self.readings):.2f}"
        )


async def poll(http: httpx.AsyncClient, url: str, read: Callable[[str], Reading], seen: Seen) -> None:
    while True:
        seen.readings.append(read(await scrape(http, url)))
        await asyncio.sleep(POLL_INTERVAL_S)


@dataclass
class Watch:
    worker: Seen
    picker: Seen
    pollers: list[asyncio.Task[None]]

    def polling(self) -> bool:
        """False once a poller has failed: the load need not go on."""
        return not any(task.done() for task in self.pollers)


@contextlib.asynccontextmanager
async def watching(http: httpx.AsyncClient, vllm: VllmServer, stack: RunningStack) -> AsyncIterator[Watch]:
    """Poll vLLM's and the picker's metrics while the body runs, each on its own: under load vLLM's ``/metrics``
    can take seconds to answer, and the picker's readings should not wait for it."""
    worker, picker = Seen([]), Seen([])
    pollers = [
        asyncio.create_task(poll(http, vllm.metrics_url, vllm_reading, worker)),
        asyncio.create_task(
            poll(http, stack.metrics_url("epp"), lambda text: picker_reading(text, vllm.endpoint), picker)
        ),
    ]
    try:
        yield Watch(worker, picker, pollers)
    finally:
        for task in pollers:
            task.cancel()
        outcomes = await asyncio.gather(*pollers, return_exceptions=True)
    failures = [outcome for outcome in outcomes if isinstance(outcome, Exception)]  # not the cancellations
    if failures:
        raise failures[0]
    assert worker.readings and picker.readings, "no metrics were read during the load"


async def test_picker_scrapes_vllm_and_finds_it_ready(stack: RunningStack, vllm: VllmServer) -> None:
    labels = {"pool": POOL, "endpoint": vllm.endpoint}
    async with httpx.AsyncClient(timeout=30) as http:
        first = await scrape(http, stack.metrics_url("epp"))
        assert sample(first, READY, **labels) is not None, f"epp exports no {READY}{labels}"
        ok_before = metric(first, SCRAPES, **labels, result="ok")
        # vLLM is idle and was healthy before the stack started: every scrape in this window succeeds.
        later = await scrape_until(
            http,
            stack.metrics_url("epp"),
            lambda text: (
                metric(text, SCRAPES, **labels, result="ok") >= ok_before + 3 and sample(text, READY, **labels) == 1
            ),
        )
    assert sample(later, READY, **labels) == 1
    assert metric(later, SCRAPES, **labels, result="ok") >= ok_before + 3
    assert metric(later, SCRAPES, **labels, result="error") == metric(first, SCRAPES, **labels, result="error")


async def test_picker_sees_queueing_and_kv_use_as_vllm_reports_them(stack: RunningStack, vllm: VllmServer) -> None:
    rng = random.Random(6)
    deadline = time.monotonic() + LOAD_DEADLINE_S
    async with (
        httpx.AsyncClient(timeout=60) as http,
        openai.AsyncOpenAI(base_url=f"{vllm.url}/v1", api_key="unused", max_retries=0, timeout=300) as client,
    ):
        picker_before = await scrape(http, stack.metrics_url("epp"))
        picker_reading(picker_before, vllm.endpoint)  # fails at once if the gauges are not exported
        async with watching(http, vllm, stack) as watch:
            worker, picker = watch.worker, watch.picker
            waves = 0
            while watch.polling() and (
                waves == 0 or (time.monotonic() < deadline and not all(worker.loaded() + picker.loaded()))
            ):
                replies = await wave(client, rng, WAVE_REQUESTS, PROMPT_TOKENS, MAX_TOKENS)
                assert all(reply.usage and reply.usage.completion_tokens == MAX_TOKENS for reply in replies)
                waves += 1
        print(f"\n{waves} waves; vLLM {worker.summary()}; picker {picker.summary()}")
        assert worker.loaded() == (True, True, True), (
            f"vLLM never showed running / waiting / kv use above 0 in {waves} waves: the load is too light"
        )
        assert picker.loaded() == (True, True, True), (
            f"the picker never showed running / waiting / kv use above 0 in {waves} waves while vLLM did; "
            f"it read {sorted(set(picker.readings), key=str)}"
        )
        # What the picker read can only have come from vLLM: within vLLM's own bounds.
        for reading in picker.readings:
            assert 0 <= reading.running <= MAX_NUM_SEQS, reading
            assert 0 <= reading.running + reading.waiting <= WAVE_REQUESTS, reading
            assert 0.0 <= reading.kv_usage <= 1.0, reading

        # At rest both sides settle on the same numbers, once the picker has scraped again.
        rest = vllm_reading(
            await scrape_until(http, vllm.metrics_url, lambda text: vllm_reading(text).loaded() == (False,) * 3)
        )
        picker_text = await scrape_until(
            http, stack.metrics_url("epp"), lambda text: picker_reading(text, vllm.endpoint) == rest
        )
        assert picker_reading(picker_text, vllm.endpoint) == rest
        labels = {"pool": POOL, "endpoint": vllm.endpoint}
        assert sample(picker_text, READY, **labels) == 1
        # Not asserted: a scrape may time out while vLLM is loaded (its /metrics then answers slowly here).
        scrapes = {
            result: metric(picker_text, SCRAPES, **labels, result=result)
            - metric(picker_before, SCRAPES, **labels, result=result)
            for result in ("ok", "error")
        }
        print(f"picker scrapes of vLLM during the load and after: {scrapes}")
