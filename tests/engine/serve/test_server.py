"""Stopping the server (SIGINT/SIGTERM set the stop event) drains: requests in flight, queued ones included, finish
before it returns."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import aiohttp

from engine.serve.model import LoadedModel
from engine.serve.server import serve
from engine.serve.worker import TorchWorker
from tests.engine.serve.support import MODEL, OPTIONS, Decoders, wait_until
from tests.helpers import sse_events


async def test_a_stop_drains_the_requests_in_flight_and_queued(
    tiny_model: LoadedModel, http: aiohttp.ClientSession
) -> None:
    decoders = Decoders(step_seconds=0.01)
    options = replace(OPTIONS, port=0, drain_seconds=10.0)
    worker = TorchWorker(tiny_model, options, make_decoder=decoders)
    stop = asyncio.Event()
    urls: list[str] = []
    server = asyncio.create_task(serve(worker, options, stop, on_ready=urls.append))
    try:
        await wait_until(lambda: bool(urls))
        body = {"model": MODEL, "prompt": "x = 1", "max_tokens": 20, "ignore_eos": True, "stream": True}

        async def stream() -> list[object]:
            async with http.post(urls[0] + "/v1/completions", json=body) as response:
                return sse_events(await response.read())

        requests = [asyncio.create_task(stream()) for _ in range(2)]
        await wait_until(lambda: worker.num_running == 1 and worker.num_waiting == 1)
        stop.set()
        answers = await asyncio.gather(*requests)
        await asyncio.wait_for(server, 10)
    finally:
        stop.set()
        worker.close()

    for events in answers:
        assert events[-1] == "[DONE]"
        assert len([event for event in events[:-1] if isinstance(event, dict) and event["choices"]]) >= 2
    assert [decoder.generated for decoder in decoders.made] == [20, 20]
