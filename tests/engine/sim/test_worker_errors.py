"""Client mistakes get OpenAI error bodies with a 4xx status, never a 500."""

import aiohttp
import pytest

from engine.sim.config import SimConfig
from engine.sim.worker import SimWorker
from tests.engine.sim.support import instant_sleep, served

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
USER_HI = [{"role": "user", "content": "hi"}]

# (endpoint, raw body, expected param, expected code)
BAD_REQUESTS = [
    (CHAT, b"{not json", None, "invalid_json"),
    (CHAT, b'{"model": "sim", "messages": [{"role": "user", "content": "\xff\xfe"}]}', None, "invalid_json"),
    (CHAT, b"[1, 2]", None, "invalid_json"),  # JSON, but not an object
    (CHAT, b"", None, "invalid_json"),
    (CHAT, b'{"messages": [{"role": "user", "content": "hi"}]}', "model", "missing_required_parameter"),
    (CHAT, b'{"model": 7, "messages": []}', "model", "invalid_type"),
    (CHAT, b'{"model": "sim"}', "messages", "missing_required_parameter"),
    (CHAT, b'{"model": "sim", "messages": []}', "messages", "invalid_type"),
    (CHAT, b'{"model": "sim", "messages": "hi"}', "messages", "invalid_type"),
    (CHAT, b'{"model": "sim", "messages": ["hi"]}', "messages[0]", "invalid_type"),
    (CHAT, b'{"model": "sim", "messages": [{"content": "hi"}]}', "messages[0].role", "missing_required_parameter"),
    (CHAT, b'{"model": "sim", "messages": [{"role": "user", "content": 5}]}', "messages[0].content", "invalid_type"),
    (
        CHAT,
        b'{"model": "sim", "messages": [{"role": "user", "content": [{"type": "audio"}]}]}',
        "messages[0].content[0].type",
        "invalid_value",
    ),
    (
        CHAT,
        b'{"model": "sim", "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}',
        "messages[0].content[0].text",
        "invalid_type",
    ),
    (
        CHAT,
        b'{"model": "sim", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}',
        "messages[0].content[0].image_url.url",
        "missing_required_parameter",
    ),
    (CHAT, b'{"model": "sim", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "5"}', "max_tokens",
     "invalid_type"),
    (CHAT, b'{"model": "sim", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}', "max_tokens",
     "invalid_type"),
    (CHAT, b'{"model": "sim", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2.5}', "max_tokens",
     "invalid_type"),
    (CHAT, b'{"model": "sim", "messages": [{"role": "user", "content": "hi"}], "max_tokens": true}',
     "max_tokens", "invalid_type"),
    (CHAT, b'{"model": "sim", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": -1}',
     "max_completion_tokens", "invalid_type"),
    (CHAT, b'{"model": "sim", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}', "stream",
     "invalid_type"),
    (CHAT, b'{"model": "sim", "messages": [{"role": "user", "content": "hi"}], "stream_options": {}}',
     "stream_options", "invalid_value"),  # only allowed with stream
    (CHAT, b'{"model": "sim", "messages": [{"role": "user", "content": "hi"}], "stream": true, '
     b'"stream_options": {"include_usage": 1}}', "stream_options.include_usage", "invalid_type"),
    (CHAT, b'{"model": "sim", "messages": [{"role": "user", "content": "hi"}], "stream": true, '
     b'"stream_options": []}', "stream_options", "invalid_type"),
    (CHAT, b'{"model": "sim", "messages": [{"role": "user", "content": "hi"}], "n": 2}', "n", "unsupported_value"),
    (CHAT, b'{"model": "sim", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e400}', None,
     "invalid_json"),
    (COMPLETIONS, b'{"model": "sim"}', "prompt", "missing_required_parameter"),
    (COMPLETIONS, b'{"model": "sim", "prompt": []}', "prompt", "invalid_type"),
    (COMPLETIONS, b'{"model": "sim", "prompt": [1, 2, 3]}', "prompt", "invalid_type"),
    (COMPLETIONS, b'{"model": "sim", "prompt": ["ok", null]}', "prompt", "invalid_type"),
    (COMPLETIONS, b'{"model": "sim", "prompt": "hi", "max_tokens": {}}', "max_tokens", "invalid_type"),
    (COMPLETIONS, b'{"prompt": "hi"}', "model", "missing_required_parameter"),
]  # fmt: skip


def make_worker() -> SimWorker:
    # A 64-token context (4 blocks of 16) makes the context-length checks easy to reach.
    return SimWorker(("sim",), SimConfig(num_kv_blocks=4, block_size=16), sleep=instant_sleep)


@pytest.mark.parametrize(("path", "raw", "param", "code"), BAD_REQUESTS)
async def test_bad_requests_are_400_with_an_openai_error(
    http: aiohttp.ClientSession, path: str, raw: bytes, param: str | None, code: str
) -> None:
    async with (
        served(make_worker()) as base,
        http.post(base + path, data=raw, headers={"Content-Type": "application/json"}) as response,
    ):
        body = await response.json()

    assert response.status == 400
    error = body["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert error["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (CHAT, {"model": "llama", "messages": USER_HI}),
        (COMPLETIONS, {"model": "SIM", "prompt": "hi"}),  # model names are case-sensitive
    ],
)
async def test_unknown_model_is_404_model_not_found(
    http: aiohttp.ClientSession, path: str, body: dict[str, object]
) -> None:
    async with served(make_worker()) as base, http.post(base + path, json=body) as response:
        error = (await response.json())["error"]

    assert response.status == 404
    assert (error["code"], error["param"], error["type"]) == ("model_not_found", "model", "invalid_request_error")
    assert str(body["model"]) in error["message"]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        # 64 one-token words leave no room in the 64-token context.
        (COMPLETIONS, {"model": "sim", "prompt": " a" * 64}, "prompt"),
        # 10 prompt tokens + 60 requested > 64.
        (COMPLETIONS, {"model": "sim", "prompt": " a" * 10, "max_tokens": 60}, "prompt"),
        (CHAT, {"model": "sim", "messages": [{"role": "user", "content": " a" * 70}]}, "messages"),
    ],
)
async def test_context_overflow_is_400_context_length_exceeded(
    http: aiohttp.ClientSession, path: str, body: dict[str, object], param: str
) -> None:
    async with served(make_worker()) as base, http.post(base + path, json=body) as response:
        error = (await response.json())["error"]

    assert response.status == 400
    assert (error["code"], error["param"]) == ("context_length_exceeded", param)
    assert "64 tokens" in error["message"]


async def test_prompt_filling_the_context_without_max_tokens_is_cut_to_fit(http: aiohttp.ClientSession) -> None:
    # 62 prompt tokens leave room for 2 of the 16 the config would generate.
    async with (
        served(make_worker()) as base,
        http.post(base + COMPLETIONS, json={"model": "sim", "prompt": " a" * 62}) as response,
    ):
        body = await response.json()

    assert body["usage"]["completion_tokens"] == 2
    assert body["choices"][0]["finish_reason"] == "length"
