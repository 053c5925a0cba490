"""The OpenAI-compatible API over real HTTP: response shapes, streaming frames, models and health."""

from typing import Any

import aiohttp
import pytest

from engine.sim.tokens import synthetic_completion, tokenize
from engine.sim.worker import SimWorker
from tests.engine.sim.support import FAST_CONFIG, instant_sleep, read_sse, served

CHAT_URL = "/v1/chat/completions"
COMPLETIONS_URL = "/v1/completions"
HELLO_CHAT = {"model": "sim", "messages": [{"role": "user", "content": "Hello world"}]}
# <|user|> Hello " world" <|end|> <|assistant|>
HELLO_CHAT_PROMPT_TOKENS = 5


def make_worker() -> SimWorker:
    return SimWorker(("sim", "sim-alias"), FAST_CONFIG, sleep=instant_sleep)


async def post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with http.post(url, json=body) as response:
        return response.status, await response.json()


async def test_chat_completion_shape_and_usage(http: aiohttp.ClientSession) -> None:
    async with served(make_worker()) as base:
        status, body = await post(http, base + CHAT_URL, HELLO_CHAT)

    assert status == 200
    assert body["id"].startswith("chatcmpl-")
    assert (body["object"], body["model"]) == ("chat.completion", "sim")
    assert isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "stop"  # FAST_CONFIG's 4 tokens, no max_tokens
    assert body["usage"] == {"prompt_tokens": HELLO_CHAT_PROMPT_TOKENS, "completion_tokens": 4, "total_tokens": 9}
    assert len(tokenize(choice["message"]["content"])) == 4


@pytest.mark.parametrize(
    ("limits", "expected_tokens", "expected_finish"),
    [
        ({"max_tokens": 2}, 2, "length"),
        ({"max_completion_tokens": 3}, 3, "length"),
        ({"max_completion_tokens": 3, "max_tokens": 1}, 3, "length"),  # the newer field wins, as in vLLM
        ({"max_tokens": 4}, 4, "stop"),  # equal to the natural length: not cut
    ],
)
async def test_chat_max_tokens_cuts_with_length(
    http: aiohttp.ClientSession, limits: dict[str, int], expected_tokens: int, expected_finish: str
) -> None:
    async with served(make_worker()) as base:
        _, body = await post(http, base + CHAT_URL, HELLO_CHAT | limits)

    assert body["usage"]["completion_tokens"] == expected_tokens
    assert body["choices"][0]["finish_reason"] == expected_finish


async def test_alias_is_served_and_echoed(http: aiohttp.ClientSession) -> None:
    async with served(make_worker()) as base:
        status, body = await post(http, base + CHAT_URL, HELLO_CHAT | {"model": "sim-alias"})

    assert (status, body["model"]) == (200, "sim-alias")


async def test_chat_stream_frames_follow_openai(http: aiohttp.ClientSession) -> None:
    async with served(make_worker()) as base:
        body = HELLO_CHAT | {"stream": True, "stream_options": {"include_usage": True}}
        async with http.post(base + CHAT_URL, json=body) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            events = await read_sse(response)

    *chunks, usage_chunk, done = events
    assert done == "[DONE]"
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in [*chunks, usage_chunk])
    assert len({chunk["id"] for chunk in [*chunks, usage_chunk]}) == 1
    role, *contents, finish = (chunk["choices"][0] for chunk in chunks)
    assert role["delta"] == {"role": "assistant", "content": ""}
    assert [content["finish_reason"] for content in contents] == [None] * 4
    assert finish == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    streamed = [content["delta"]["content"] for content in contents]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {
        "prompt_tokens": HELLO_CHAT_PROMPT_TOKENS,
        "completion_tokens": len(streamed),
        "total_tokens": HELLO_CHAT_PROMPT_TOKENS + len(streamed),
    }


@pytest.mark.parametrize("stream_options", [None, {}, {"include_usage": False}])
async def test_no_usage_chunk_unless_asked(http: aiohttp.ClientSession, stream_options: Any) -> None:
    body = HELLO_CHAT | {"stream": True}
    if stream_options is not None:
        body["stream_options"] = stream_options
    async with served(make_worker()) as base, http.post(base + CHAT_URL, json=body) as response:
        events = await read_sse(response)

    assert events[-1] == "[DONE]"
    assert all("usage" not in event for event in events[:-1])
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


async def test_stream_and_non_stream_give_the_same_text(http: aiohttp.ClientSession) -> None:
    async with served(make_worker()) as base:
        _, whole = await post(http, base + CHAT_URL, HELLO_CHAT)
        async with http.post(base + CHAT_URL, json=HELLO_CHAT | {"stream": True}) as response:
            events = await read_sse(response)

    streamed = "".join(event["choices"][0]["delta"].get("content", "") for event in events[:-1])
    assert streamed == whole["choices"][0]["message"]["content"]


async def test_completion_shape(http: aiohttp.ClientSession) -> None:
    async with served(make_worker()) as base:
        status, body = await post(http, base + COMPLETIONS_URL, {"model": "sim", "prompt": "Once upon a time"})

    assert status == 200
    assert body["id"].startswith("cmpl-")
    assert body["object"] == "text_completion"
    (choice,) = body["choices"]
    assert (choice["index"], choice["finish_reason"]) == (0, "stop")
    assert choice["text"] == "".join(synthetic_completion(tokenize("Once upon a time"), 4))
    # "Once" " upon" " a" " time"
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}


async def test_completion_with_prompt_list_answers_each_prompt(http: aiohttp.ClientSession) -> None:
    body = {"model": "sim", "prompt": ["one", "two three"], "max_tokens": 3}
    async with served(make_worker()) as base:
        _, whole = await post(http, base + COMPLETIONS_URL, body)
        async with http.post(base + COMPLETIONS_URL, json=body | {"stream": True}) as response:
            events = await read_sse(response)

    assert [choice["index"] for choice in whole["choices"]] == [0, 1]
    assert [choice["finish_reason"] for choice in whole["choices"]] == ["length", "length"]
    # Prompts of 1 and 2 tokens, 3 completion tokens each.
    assert whole["usage"] == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}
    assert events[-1] == "[DONE]"
    for index in (0, 1):
        chunks = [event["choices"][0] for event in events[:-1] if event["choices"][0]["index"] == index]
        assert [chunk["finish_reason"] for chunk in chunks] == [None, None, "length"]
        assert "".join(chunk["text"] for chunk in chunks) == whole["choices"][index]["text"]


async def test_completion_stream_usage_chunk(http: aiohttp.ClientSession) -> None:
    body = {"model": "sim", "prompt": "Hi", "stream": True, "stream_options": {"include_usage": True}}
    async with served(make_worker()) as base, http.post(base + COMPLETIONS_URL, json=body) as response:
        events = await read_sse(response)

    *token_chunks, usage_chunk, done = events
    assert done == "[DONE]"
    assert len(token_chunks) == 4
    assert token_chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert usage_chunk["object"] == "text_completion"
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 1, "completion_tokens": 4, "total_tokens": 5}


async def test_models_lists_every_served_name(http: aiohttp.ClientSession) -> None:
    async with served(make_worker()) as base, http.get(base + "/v1/models") as response:
        body = await response.json()

    assert body["object"] == "list"
    assert [model["id"] for model in body["data"]] == ["sim", "sim-alias"]
    assert all(model["object"] == "model" and model["root"] == "sim" for model in body["data"])
    assert body["data"][0]["max_model_len"] == FAST_CONFIG.max_model_len


async def test_health_is_an_empty_200(http: aiohttp.ClientSession) -> None:
    async with served(make_worker()) as base, http.get(base + "/health") as response:
        assert (response.status, await response.read()) == (200, b"")
