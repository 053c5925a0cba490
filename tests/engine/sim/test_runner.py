"""Several workers in one process: start-up, independence, and draining on stop."""

import asyncio

import aiohttp
import pytest

from engine.sim.config import SimConfig
from engine.sim.runner import ListeningWorker, WorkerBinding, WorkerSpec, listening, serve
from engine.sim.worker import SimWorker
from tests.engine.sim.support import FAST_CONFIG, HeldSleep, assert_nothing_held, wait_until


@pytest.mark.parametrize(
    ("model_names", "host", "port", "message"),
    [
        ((), "127.0.0.1", 8000, "model_names"),
        (("ok", ""), "127.0.0.1", 8000, "model_names"),
        (("m",), "", 8000, "host"),
        (("m",), "127.0.0.1", 65536, "port"),
        (("m",), "127.0.0.1", -1, "port"),
    ],
)
def test_worker_spec_rejects_bad_values(model_names: tuple[str, ...], host: str, port: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WorkerSpec(model_names, host, port)


async def test_serve_runs_one_worker_per_spec_until_stopped(http: aiohttp.ClientSession) -> None:
    specs = [WorkerSpec(("a", "a-alias"), "127.0.0.1", 0), WorkerSpec(("b",), "127.0.0.1", 0)]
    ready: list[tuple[WorkerSpec, ListeningWorker]] = []
    stop = asyncio.Event()
    serving = asyncio.create_task(serve(specs, FAST_CONFIG, stop, on_ready=lambda *pair: ready.append(pair)))
    await wait_until(lambda: len(ready) == 2)

    served_models = []
    for spec, worker in ready:
        async with http.get(worker.url + "/v1/models") as response:
            served_models.append([model["id"] for model in (await response.json())["data"]])
        assert worker.worker.model_names == spec.model_names
    stop.set()
    await asyncio.wait_for(serving, timeout=2)

    assert served_models == [["a", "a-alias"], ["b"]]
    assert len({worker.url for _, worker in ready}) == 2
    with pytest.raises(aiohttp.ClientConnectionError):
        await http.get(ready[0][1].url + "/health")


async def test_stop_lets_in_flight_requests_finish(http: aiohttp.ClientSession) -> None:
    # 5 tokens, 20 ms apart: about 100 ms of generation still to go when the stop comes.
    config = SimConfig(ttft_base_ms=1, itl_ms=20, itl_batch_factor=0, output_tokens=5)
    ready: list[ListeningWorker] = []
    stop = asyncio.Event()
    specs = [WorkerSpec(("m",), "127.0.0.1", 0)]
    serving = asyncio.create_task(
        serve(specs, config, stop, on_ready=lambda spec, worker: ready.append(worker), drain_seconds=2)
    )
    await wait_until(lambda: bool(ready))

    async def complete() -> dict[str, int]:
        async with http.post(ready[0].url + "/v1/completions", json={"model": "m", "prompt": "hi"}) as response:
            usage: dict[str, int] = (await response.json())["usage"]
            return usage

    request = asyncio.create_task(complete())
    await wait_until(lambda: ready[0].worker.scheduler.num_running == 1)
    stop.set()

    assert (await request)["completion_tokens"] == 5
    await asyncio.wait_for(serving, timeout=2)


async def test_drain_gives_up_on_requests_that_outlast_it(http: aiohttp.ClientSession) -> None:
    worker = SimWorker(("m",), FAST_CONFIG, sleep=HeldSleep(free_calls=1))  # past the front end, stuck in a step
    async with listening([WorkerBinding(worker, "127.0.0.1", 0)], drain_seconds=0.1) as (listening_worker,):
        body = {"model": "m", "prompt": "x"}
        request = asyncio.create_task(http.post(listening_worker.url + "/v1/completions", json=body))
        await wait_until(lambda: worker.scheduler.num_running == 1)

    assert_nothing_held(worker)
    with pytest.raises(aiohttp.ClientError):
        await request
