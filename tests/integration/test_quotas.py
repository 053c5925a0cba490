"""Token quotas through the real gateway with the real OpenAI SDK: exact charges (store and headers), forced
usage in streams, tokens-per-minute exhaustion, a client that leaves mid-stream, speech metered by characters."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.integration.stack import (
    RunningStack,
    add_tenant,
    minute_tokens,
    stack_config,
    start_stack,
    tenant_usage,
)

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
SPEECH = "hexgrad/Kokoro-82M"
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello to the gateway."}]


def settled(stack: RunningStack, tenant: str, expected: int, within_s: float = 2.0) -> int:
    """The tenant's tokens this minute once the charge of finished responses has been written (it is written
    after the stream ends, off the request path)."""
    deadline = time.monotonic() + within_s
    while (used := minute_tokens(tenant_usage(stack, tenant))) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return used


def client(stack: RunningStack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.gateway}/v1", api_key=key, max_retries=0)


def test_json_usage_is_charged_exactly_with_truthful_headers(stack: RunningStack) -> None:
    tenant, key = add_tenant(stack, "enterprise")
    with client(stack, key) as api:
        raw = api.chat.completions.with_raw_response.create(model=LLAMA, messages=HELLO, max_tokens=8)
        completion = raw.parse()
    assert completion.usage is not None
    assert raw.headers["x-ratelimit-limit-tokens"] == "500000"
    # Remaining counts the reservation (prompt estimate + max_tokens) made at admission, before the charge.
    remaining = int(raw.headers["x-ratelimit-remaining-tokens"])
    assert 500000 - 8 - 30 < remaining < 500000 - 8
    assert raw.headers["x-ratelimit-reset-tokens"]
    assert raw.headers["x-ratelimit-limit-requests"] == "1000"
    assert raw.headers["x-ratelimit-remaining-requests"] == "999"
    assert settled(stack, tenant, completion.usage.total_tokens) == completion.usage.total_tokens


def test_a_stream_is_charged_its_usage_even_when_the_client_did_not_ask(stack: RunningStack) -> None:
    tenant, key = add_tenant(stack, "enterprise")
    with client(stack, key) as api:
        chunks = list(api.chat.completions.create(model=LLAMA, messages=HELLO, max_tokens=6, stream=True))
        asked = list(
            api.chat.completions.create(
                model=LLAMA, messages=HELLO, max_tokens=6, stream=True, stream_options={"include_usage": True}
            )
        )
    # The gateway asked for usage on the client's behalf and removed that chunk again.
    assert all(chunk.usage is None and chunk.choices for chunk in chunks)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    # The client that asked gets it; the same prompt costs the same, so both charges are known exactly.
    assert asked[-1].usage is not None and not asked[-1].choices
    total = asked[-1].usage.total_tokens
    assert settled(stack, tenant, 2 * total) == 2 * total


def test_tokens_per_minute_exhaustion_is_429_with_retry_after(stack: RunningStack) -> None:
    tenant, key = add_tenant(stack, "free")  # 5,000 tokens per minute
    long_prompt: list[ChatCompletionMessageParam] = [{"role": "user", "content": "word " * 3000}]
    with client(stack, key) as api:
        first = api.chat.completions.create(model=LLAMA, messages=long_prompt, max_tokens=10)
        assert first.usage is not None
        settled(stack, tenant, first.usage.total_tokens)
        with pytest.raises(openai.RateLimitError) as refused:
            api.chat.completions.create(model=LLAMA, messages=long_prompt, max_tokens=10)
    response = refused.value.response
    assert response.status_code == 429
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.headers["x-ratelimit-limit-tokens"] == "5000"
    assert int(response.headers["x-ratelimit-remaining-tokens"]) == 5000 - first.usage.total_tokens
    assert response.json()["error"]["type"] == "tokens"
    # A refused request holds nothing: the window still shows only the first request.
    assert minute_tokens(tenant_usage(stack, tenant)) == first.usage.total_tokens


def test_speech_is_routed_to_its_pool_and_charged_by_characters(stack: RunningStack) -> None:
    tenant, key = add_tenant(stack, "enterprise")
    text = "Hello from the speech pool."
    response = httpx.post(
        f"{stack.gateway}/v1/audio/speech",
        json={"model": SPEECH, "input": text, "voice": "alloy", "response_format": "wav"},
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav" and response.content.startswith(b"RIFF")
    assert settled(stack, tenant, len(text)) == len(text)
    wrong = httpx.post(
        f"{stack.gateway}/v1/chat/completions",
        json={"model": SPEECH, "messages": HELLO},
        headers={"authorization": f"Bearer {key}"},
    )
    assert wrong.status_code == 400


@pytest.fixture(scope="module")
def slow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """Workers that stream 200 tokens 20 ms apart, so a client can leave in the middle."""
    sim = {"ttft_base_ms": 2, "ttft_per_prompt_token_ms": 0.0, "itl_ms": 20, "output_tokens": 200}
    running = start_stack(stack_config(Path(tmp_path_factory.mktemp("slow")), sim))
    try:
        yield running
    finally:
        running.stop()


def test_a_client_that_leaves_mid_stream_is_charged_the_streamed_tokens(slow_stack: RunningStack) -> None:
    tenant, key = add_tenant(slow_stack, "pro")
    seen = 0
    with (
        httpx.Client(timeout=10) as http,
        http.stream(
            "POST",
            f"{slow_stack.gateway}/v1/chat/completions",
            json={"model": LLAMA, "messages": HELLO, "stream": True, "max_tokens": 200},
            headers={"authorization": f"Bearer {key}"},
        ) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("data: {") and orjson.loads(line[6:])["choices"][0]["delta"].get("content"):
                seen += 1
            if seen == 5:
                break  # leaving closes the connection
    time.sleep(1.0)
    charged = minute_tokens(tenant_usage(slow_stack, tenant))
    prompt_estimate = 4 + 1 + 7  # overhead, role, "Say hello to the gateway." (25 bytes / 4)
    # What passed the gateway before it noticed is charged: at least what the client read, far from the 200
    # reserved, and never zero.
    assert prompt_estimate + 5 <= charged < prompt_estimate + 100
