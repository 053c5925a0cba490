"""What a worker actually receives through the gateway: identity headers set by us, no credentials, no forgeries."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import httpx
import pytest
import yaml
from aiohttp import web

from tests.integration.stack import RunningStack, stack_config, start_stack


class EchoWorker:
    """A stand-in worker that answers a chat completion and remembers the headers it was sent."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        async def chat(request: web.Request) -> web.Response:
            self.seen.append({name.lower(): value for name, value in request.headers.items()})
            usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
            return web.json_response({"object": "chat.completion", "choices": [], "usage": usage})

        async def metrics(request: web.Request) -> web.Response:
            # The picker schedules only on endpoints whose vLLM metrics it can read.
            return web.Response(text="vllm:num_requests_running 0\nvllm:num_requests_waiting 0\n")

        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        app.router.add_get("/metrics", metrics)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def close(self) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


@pytest.fixture(scope="module")
def echo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningStack, EchoWorker]]:
    worker = EchoWorker()
    config = stack_config(tmp_path_factory.mktemp("echo"))
    document = yaml.safe_load(config.read_text())
    document["pools"]["llama"]["endpoints"] = [f"127.0.0.1:{worker.port}"]
    config.write_text(yaml.safe_dump(document))
    stack = start_stack(config, extra_args=("--engine", "none"))
    yield stack, worker
    assert stack.stop() == 0
    worker.close()


def test_worker_sees_gateway_identity_and_no_credentials(echo_stack: tuple[RunningStack, EchoWorker]) -> None:
    stack, worker = echo_stack
    forged = {
        "authorization": "Bearer tlabs_pro_demo_key_change_me",
        "x-api-key": "tlabs_free_demo_key_change_me",
        "x-tenant-id": "someone-else",
        "x-tenant-tier": "enterprise",
        "x-ai-eg-model": "nvidia/NVIDIA-Nemotron-Nano-12B-v2-VL-FP8",
        "x-gateway-destination-endpoint": "169.254.169.254:80",
    }
    body = {"model": "meta-llama/Llama-3.1-8B-Instruct", "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(f"{stack.gateway}/v1/chat/completions", json=body, headers=forged, timeout=10)
    assert response.status_code == 200, response.text
    (seen,) = worker.seen
    assert "authorization" not in seen and "x-api-key" not in seen
    assert seen["x-tenant-id"] == "pro-demo" and seen["x-tenant-tier"] == "pro"
    assert seen["x-ai-eg-model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert seen["x-gateway-destination-endpoint"] == f"127.0.0.1:{worker.port}"
    assert not any("tlabs_" in value for value in seen.values())


def test_x_api_key_alone_identifies_the_tenant(echo_stack: tuple[RunningStack, EchoWorker]) -> None:
    stack, worker = echo_stack
    body = {"model": "meta-llama/Llama-3.1-8B-Instruct", "messages": []}
    headers = {"x-api-key": "tlabs_free_demo_key_change_me"}
    assert httpx.post(f"{stack.gateway}/v1/chat/completions", json=body, headers=headers, timeout=10).status_code == 200
    assert worker.seen[-1]["x-tenant-id"] == "free-demo" and "x-api-key" not in worker.seen[-1]
