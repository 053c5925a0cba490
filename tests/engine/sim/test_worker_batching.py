"""Continuous batching over HTTP: the slot limit, preemption, and clients that leave while waiting or mid-stream."""

import asyncio
import logging

import aiohttp
import pytest
from aiohttp import web

from engine.sim.config import SimConfig
from engine.sim.tokens import synthetic_completion, tokenize
from engine.sim.worker import SimWorker, build_app
from tests.engine.sim.support import HeldSleep, assert_nothing_held, instant_sleep, read_sse, served, wait_until
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


async def test_one_slot_makes_the_second_request_wait(http: aiohttp.ClientSession) -> None:
    # No front-end delay here and below: the engine loop is then the only sleeper, and HeldSleep holds its steps.
    sleep = HeldSleep()
    worker = SimWorker(("sim",), SimConfig(ttft_base_ms=0, max_num_seqs=1), sleep=sleep)
    async with served(worker) as base:
        first = asyncio.create_task(chat_status(http, base))
        await wait_until(lambda: sleep.held == 1)  # its first step is under way
        second = asyncio.create_task(chat_status(http, base))
        await wait_until(lambda: worker.scheduler.num_waiting == 1)
        async with http.get(base + "/metrics") as response:
            samples = metric_samples(await response.text())
        sleep.release()
        statuses = [await first, await second]

    assert samples[("vllm:num_requests_running", MODEL)] == 1.0
    assert samples[("vllm:num_requests_waiting", MODEL)] == 1.0
    assert statuses == [200, 200]
    assert_nothing_held(worker)


async def test_client_leaving_mid_stream_frees_its_slot_and_blocks(http: aiohttp.ClientSession) -> None:
    # The prefill step and the first decode step pass, so two tokens are streamed; the third never comes.
    sleep = HeldSleep(free_calls=2)
    worker = SimWorker(("sim",), SimConfig(ttft_base_ms=0, max_num_seqs=1, output_tokens=100), sleep=sleep)
    async with served(worker) as base:
        response = await http.post(base + "/v1/chat/completions", json=CHAT_BODY | {"stream": True})
        await read_content_chunks(response, 2)
        assert worker.scheduler.kv_cache.usage > 0
        response.close()
        await wait_until(lambda: worker.scheduler.num_running == 0)

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
            await wait_until(lambda: worker.scheduler.num_running == 0)
    finally:
        await runner.cleanup()

    assert_nothing_held(worker)
    assert "client left /v1/completions mid-stream" in caplog.text


async def test_client_leaving_while_queued_leaves_the_queue(http: aiohttp.ClientSession) -> None:
    sleep = HeldSleep()
    worker = SimWorker(("sim",), SimConfig(ttft_base_ms=0, max_num_seqs=1), sleep=sleep)
    async with served(worker) as base:
        first = asyncio.create_task(chat_status(http, base))
        await wait_until(lambda: worker.scheduler.num_running == 1)
        async with aiohttp.ClientSession() as impatient_client:
            impatient = asyncio.create_task(chat_status(impatient_client, base))
            await wait_until(lambda: worker.scheduler.num_waiting == 1)
            impatient.cancel()
        await wait_until(lambda: worker.scheduler.num_waiting == 0)

        assert worker.scheduler.num_running == 1
        sleep.release()
        assert await first == 200

    assert_nothing_held(worker)


async def test_streams_preempted_for_kv_blocks_stay_whole_and_their_usage_exact(http: aiohttp.ClientSession) -> None:
    # 4 blocks of 2 tokens hold the two 3-token prompts, but not their third output tokens: the second sequence
    # is preempted and recomputed, while its client's stream just pauses.
    config = SimConfig(ttft_base_ms=0, output_tokens=4, num_kv_blocks=4, block_size=2)
    worker = SimWorker(("sim",), config, sleep=instant_sleep)
    body = {"model": "sim", "prompt": ["a b c", "d e f"], "stream": True, "stream_options": {"include_usage": True}}
    async with served(worker) as base:
        async with http.post(base + "/v1/completions", json=body) as response:
            events = await read_sse(response)
        samples = metric_samples(await (await http.get(base + "/metrics")).text())

    *chunks, usage_chunk, done = events
    assert done == "[DONE]"
    for index, prompt in enumerate(("a b c", "d e f")):
        texts = [chunk["choices"][0]["text"] for chunk in chunks if chunk["choices"][0]["index"] == index]
        assert texts == list(synthetic_completion(tokenize(prompt), 4))
    assert usage_chunk["usage"] == {"prompt_tokens": 6, "completion_tokens": len(chunks), "total_tokens": 6 + 8}
    assert samples[("vllm:num_preemptions_total", MODEL)] == 1.0
    assert samples[("vllm:generation_tokens_total", MODEL)] == 8.0
    assert_nothing_held(worker)
