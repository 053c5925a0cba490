"""One request decodes at a time; the others wait in a queue that ``vllm:num_requests_waiting`` reports truly, and
a client that leaves mid-stream gives the model to the next request at once."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from engine.serve.model import LoadedModel
from tests.engine.serve.support import MODEL, Decoders, served_worker, wait_until
from tests.helpers import metric, sse_events

MESSAGES = [{"role": "user", "content": "Count to ten."}]


def chat(max_tokens: int, stream: bool = False) -> dict[str, Any]:
    return {"model": MODEL, "messages": MESSAGES, "max_tokens": max_tokens, "ignore_eos": True, "stream": stream}


async def test_a_second_request_waits_while_the_first_decodes_then_both_complete(
    tiny_model: LoadedModel, http: aiohttp.ClientSession
) -> None:
    decoders = Decoders()
    decoders.hold()  # each decoder's steps after its prefill wait for release()
    async with served_worker(tiny_model, decoders) as (worker, url):

        async def post(max_tokens: int) -> dict[str, Any]:
            async with http.post(url + "/v1/chat/completions", json=chat(max_tokens)) as response:
                assert response.status == 200
                body: dict[str, Any] = await response.json()
                return body

        first = asyncio.create_task(post(6))
        await wait_until(lambda: len(decoders.made) == 1 and decoders.made[0].steps_taken == 1)
        second = asyncio.create_task(post(4))
        await wait_until(lambda: worker.num_waiting == 1)
        async with http.get(url + "/metrics") as response:
            during = await response.text()
        decoders.release()
        answers = await asyncio.gather(first, second)
        async with http.get(url + "/metrics") as response:
            after = await response.text()

    assert metric(during, "vllm:num_requests_running") == 1
    assert metric(during, "vllm:num_requests_waiting") == 1
    assert 0 < metric(during, "vllm:kv_cache_usage_perc") < 1
    assert [answer["usage"]["completion_tokens"] for answer in answers] == [6, 4]
    assert len(decoders.made) == 2
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"):
        assert metric(after, name) == 0, name
    assert metric(after, "vllm:request_queue_time_seconds_count") == 2
    assert metric(after, "vllm:request_success_total", finished_reason="length") == 2


async def test_a_client_leaving_mid_stream_frees_the_model_for_the_next_request(
    tiny_model: LoadedModel, http: aiohttp.ClientSession
) -> None:
    decoders = Decoders(step_seconds=0.02)  # the first request would take 200 x 20 ms = 4 s to the end
    async with served_worker(tiny_model, decoders) as (worker, url):
        response = await http.post(url + "/v1/chat/completions", json=chat(200, stream=True))
        assert response.status == 200
        await response.content.readuntil(b"\n\n")  # the first event: it is decoding
        response.close()  # the client goes away
        await wait_until(lambda: worker.num_running == 0, within_seconds=5)
        abandoned = decoders.made[0]

        async with http.post(url + "/v1/chat/completions", json=chat(3, stream=True)) as next_response:
            events = sse_events(await next_response.read())

    assert abandoned.generated < 100, "the abandoned request went on decoding"
    assert events[-1] == "[DONE]" and events[-2]["choices"][0]["finish_reason"] == "length"
    assert worker.num_waiting == 0 and worker.num_running == 0
