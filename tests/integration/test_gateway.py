"""One request through the whole product: real Envoy → authz → extproc → epp → simulated vLLM workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.stack import RunningStack

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
VL = "nvidia/NVIDIA-Nemotron-Nano-12B-v2-VL-FP8"
PRO_KEY = "tlabs_pro_demo_key_change_me"
FREE_KEY = "tlabs_free_demo_key_change_me"
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello to the gateway."}]


@pytest.fixture
async def client(stack: RunningStack) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{stack.gateway}/v1", api_key=PRO_KEY, max_retries=0) as sdk:
        yield sdk


@pytest.fixture
async def http(stack: RunningStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=10) as session:
        yield session


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def test_chat_with_the_openai_sdk_returns_usage(client: openai.AsyncOpenAI) -> None:
    reply = await client.chat.completions.create(model=LLAMA, messages=HELLO, max_tokens=8)
    assert reply.model == LLAMA
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.completion_tokens == 8
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 8


async def test_completions_endpoint(client: openai.AsyncOpenAI) -> None:
    reply = await client.completions.create(model=LLAMA, prompt="Once upon a time", max_tokens=4)
    assert reply.choices[0].text and reply.usage is not None and reply.usage.completion_tokens == 4


async def test_streaming_delivers_chunks_usage_and_done(client: openai.AsyncOpenAI, http: httpx.AsyncClient) -> None:
    stream = await client.chat.completions.create(
        model=LLAMA,
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=6,
    )
    contents, usage = [], None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            contents.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            usage = chunk.usage
    assert len(contents) == 6
    assert usage is not None and usage.completion_tokens == 6

    body = {"model": LLAMA, "messages": HELLO, "stream": True, "max_tokens": 3}
    async with http.stream("POST", "/v1/chat/completions", json=body, headers=auth(PRO_KEY)) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = b"".join([part async for part in response.aiter_bytes()])
    assert raw.rstrip().endswith(b"data: [DONE]")


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "invalid_api_key"),
        ({"authorization": "Bearer tlabs_nope"}, "invalid_api_key"),
        ({"x-api-key": "x"}, "invalid_api_key"),
    ],
)
async def test_missing_or_unknown_key_is_401_json(http: httpx.AsyncClient, headers: dict[str, str], code: str) -> None:
    response = await http.post("/v1/chat/completions", json={"model": LLAMA, "messages": HELLO}, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == code


async def test_x_api_key_header_is_accepted(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/chat/completions", json={"model": LLAMA, "messages": HELLO}, headers={"x-api-key": PRO_KEY}
    )
    assert response.status_code == 200


async def test_unknown_model_is_404(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="gpt-unknown", messages=HELLO)
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe\x00garbage",
        b'{"messages": []}',
        b'{"model": 42}',
        b"[]",
        b'{"model": "m", "stream": "yes"}',
    ],
)
async def test_malformed_bodies_are_400(http: httpx.AsyncClient, body: bytes) -> None:
    response = await http.post(
        "/v1/chat/completions", content=body, headers={**auth(PRO_KEY), "content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_models_lists_what_the_tier_may_use(stack: RunningStack) -> None:
    async with openai.AsyncOpenAI(base_url=f"{stack.gateway}/v1", api_key=FREE_KEY, max_retries=0) as free:
        free_models = [model.id async for model in free.models.list()]
    async with openai.AsyncOpenAI(base_url=f"{stack.gateway}/v1", api_key=PRO_KEY, max_retries=0) as pro:
        pro_models = [model.id async for model in pro.models.list()]
    assert free_models == [LLAMA]
    assert pro_models == [LLAMA, VL, "hexgrad/Kokoro-82M"]


async def test_free_tier_may_not_use_the_vl_model(stack: RunningStack) -> None:
    async with openai.AsyncOpenAI(base_url=f"{stack.gateway}/v1", api_key=FREE_KEY, max_retries=0) as free:
        with pytest.raises(openai.PermissionDeniedError):
            await free.chat.completions.create(model=VL, messages=HELLO)


async def test_vl_model_accepts_image_content_parts(client: openai.AsyncOpenAI) -> None:
    image = "data:image/png;base64," + "iVBORw0KGgo" * 2000
    messages: list[ChatCompletionMessageParam] = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": image}}],
        }
    ]
    reply = await client.chat.completions.create(model=VL, messages=messages, max_tokens=4)
    assert reply.model == VL and reply.usage is not None and reply.usage.completion_tokens == 4


async def test_forged_routing_and_identity_headers_are_ignored(stack: RunningStack, http: httpx.AsyncClient) -> None:
    before = await worker_successes(stack)
    forged = {
        **auth(PRO_KEY),
        "x-gateway-destination-endpoint": "169.254.169.254:80",
        "x-tenant-id": "someone-else",
        "x-ai-eg-model": VL,
    }
    response = await http.post(
        "/v1/chat/completions", json={"model": LLAMA, "messages": HELLO, "max_tokens": 2}, headers=forged
    )
    assert response.status_code == 200 and response.json()["model"] == LLAMA
    after = await worker_successes(stack)
    assert sum(after[e] - before[e] for e in stack.endpoints("llama")) == 1


async def test_requests_spread_over_the_pool_and_are_metered(
    stack: RunningStack, client: openai.AsyncOpenAI, http: httpx.AsyncClient
) -> None:
    # The picker weighs running requests: an even spread is only expected from idle workers (earlier tests may
    # still be streaming), and after a scrape has shown them idle.
    await until_idle(stack)
    await asyncio.sleep(0.3)
    before = await worker_successes(stack)
    await asyncio.gather(
        *(client.chat.completions.create(model=LLAMA, messages=HELLO, max_tokens=2) for _ in range(12))
    )
    after = await worker_successes(stack)
    served = [after[e] - before[e] for e in stack.endpoints("llama")]
    assert sum(served) == 12 and min(served) >= 3, served
    text = (await http.get(stack.metrics_url("extproc"))).text
    assert metric(text, "tokenlabs_tokens_total", tenant="pro-demo", model=LLAMA, kind="completion") >= 24
    assert metric(text, "tokenlabs_cost_usd_total", tenant="pro-demo", model=LLAMA) > 0
    picks = metric((await http.get(stack.metrics_url("epp"))).text, "tokenlabs_epp_picks_total", pool="llama")
    assert picks >= 12


async def worker_successes(stack: RunningStack) -> dict[str, float]:
    counts = {}
    async with httpx.AsyncClient(timeout=5) as session:
        for endpoint in stack.endpoints("llama"):
            text = (await session.get(f"http://{endpoint}/metrics")).text
            counts[endpoint] = metric(text, "vllm:request_success_total")
    return counts


async def until_idle(stack: RunningStack, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with httpx.AsyncClient(timeout=5) as session:
        while True:
            texts = [(await session.get(f"http://{e}/metrics")).text for e in stack.endpoints("llama")]
            if all(metric(t, "vllm:num_requests_running") + metric(t, "vllm:num_requests_waiting") == 0 for t in texts):
                return
            assert asyncio.get_running_loop().time() < deadline, "the llama workers never went idle"
            await asyncio.sleep(0.05)


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_keys_never_reach_the_servers_logs(stack: RunningStack) -> None:
    # The banner prints the demo keys on purpose; nothing after it (the servers' own logs) may.
    runtime_log = stack.log().split("tokenlabs dev ready")[-1]
    assert PRO_KEY not in runtime_log and FREE_KEY not in runtime_log
