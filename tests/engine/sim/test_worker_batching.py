"""Continuous batching over HTTP: the slot limit, and clients that leave while waiting or mid-stream."""

import asyncio
import logging

import aiohttp
import pytest
from aiohttp import web

from engine.sim.config import SimConfig
from engine.sim.worker import SimWorker, build_app
from tests.engine.sim.support import HeldSleep, served, wait_until
from tests.helpers import metric_samples

MODEL = frozenset({("model_name", "sim")})
CHAT_BODY = {"model": "sim", "messages": [{"role": "user", "content": "hi"}]}


async def chat_status(http: aiohttp.ClientSession, base: str) -> int:
    async with http.post(base + "/v1/chat/completions", json=CHAT_BODY) as response:
        await response.read()
        return response.status


async def read_content_chunks(response: aiohttp.ClientResponse, count: int) -> None:
    seen = 0
    while seen < count:
        line = await response.content.readline()
        assert line, "stream ended early"
        seen += b'"content":"' in line and b'"content":""' not in line


def assert_nothing_held(worker: SimWorker) -> None:
    assert (worker.scheduler.running, worker.scheduler.waiting, worker.kv_cache.held_blocks) == (0, 0, 0)


async def test_one_slot_makes_the_second_request_wait(http: aiohttp.ClientSession) -> None:
    sleep = HeldSleep()
    worker = SimWorker(("sim",), SimConfig(max_num_seqs=1), sleep=sleep)
    async with served(worker) as base:
        requests = [asyncio.create_task(chat_status(http, base)) for _ in range(2)]
        await wait_until(lambda: worker.scheduler.waiting == 1)
        async with http.get(base + "/metrics") as response:
            samples = metric_samples(await response.text())
        sleep.release()
        statuses = await asyncio.gather(*requests)

    assert samples[("vllm:num_requests_running", MODEL)] == 1.0
    assert samples[("vllm:num_requests_waiting", MODEL)] == 1.0
    assert statuses == [200, 200]
    assert_nothing_held(worker)


async def test_client_leaving_mid_stream_frees_its_slot_and_blocks(http: aiohttp.ClientSession) -> None:
    # Prefill and the first inter-token gap pass, so two tokens are streamed; the third never comes.
    sleep = HeldSleep(free_calls=2)
    worker = SimWorker(("sim",), SimConfig(max_num_seqs=1, output_tokens=100), sleep=sleep)
    async with served(worker) as base:
        response = await http.post(base + "/v1/chat/completions", json=CHAT_BODY | {"stream": True})
        await read_content_chunks(response, 2)
        assert worker.kv_cache.held_blocks > 0
        response.close()
        await wait_until(lambda: worker.scheduler.running == 0)

        assert_nothing_held(worker)
        sleep.release()
        assert await chat_status(http, base) == 200  # the only slot is free again

    samples = metric_samples(worker.metrics.render().decode())
    # The abandoned request generated 2 tokens and is not counted as a success; the later one added 100.
    assert samples[("vllm:generation_tokens_total", MODEL)] == 102.0
    assert samples[("vllm:request_success_total", MODEL | {("finished_reason", "stop")})] == 1.0


async def test_client_leaving_mid_stream_is_noticed_on_write_without_handler_cancellation(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    # aiohttp's own default does not cancel handlers (its TestServer does), so here the failing write must end
    # the generation.
    config = SimConfig(ttft_base_ms=0, itl_ms=1, itl_batch_factor=0, output_tokens=10_000)
    worker = SimWorker(("sim",), config)
    runner = web.AppRunner(build_app(worker), handler_cancellation=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        body = {"model": "sim", "prompt": "hi", "stream": True}
        with caplog.at_level(logging.DEBUG, logger="engine.sim.worker"):
            response = await http.post(f"http://{host}:{port}/v1/completions", json=body)
            await response.content.readline()
            response.close()
            await wait_until(lambda: worker.scheduler.running == 0)
    finally:
        await runner.cleanup()

    assert_nothing_held(worker)
    assert "client left /v1/completions mid-stream" in caplog.text


async def test_client_leaving_while_queued_leaves_the_queue(http: aiohttp.ClientSession) -> None:
    sleep = HeldSleep()
    worker = SimWorker(("sim",), SimConfig(max_num_seqs=1), sleep=sleep)
    async with served(worker) as base:
        first = asyncio.create_task(chat_status(http, base))
        await wait_until(lambda: worker.scheduler.running == 1)
        async with aiohttp.ClientSession() as impatient_client:
            impatient = asyncio.create_task(chat_status(impatient_client, base))
            await wait_until(lambda: worker.scheduler.waiting == 1)
            impatient.cancel()
        await wait_until(lambda: worker.scheduler.waiting == 0)

        assert worker.scheduler.running == 1
        sleep.release()
        assert await first == 200

    assert_nothing_held(worker)
