"""Client mistakes get the simulator's (and OpenAI's) error bodies, and never reach the model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from engine.serve.model import LoadedModel
from engine.serve.worker import TorchWorker
from tests.engine.serve.support import MAX_MODEL_LEN, MODEL, served_worker
from tests.helpers import metric

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture
async def served(tiny_model: LoadedModel) -> AsyncIterator[tuple[TorchWorker, str]]:
    async with served_worker(tiny_model) as served:
        yield served


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "param"),
    [
        (CHAT, b"{not json", 400, "invalid_json", None),
        (CHAT, b"[]", 400, "invalid_json", None),
        (CHAT, {"model": "gpt-4o", "messages": HELLO}, 404, "model_not_found", "model"),
        (COMPLETIONS, {"model": "gpt-4o", "prompt": "x"}, 404, "model_not_found", "model"),
        (CHAT, {"messages": HELLO}, 400, "missing_required_parameter", "model"),
        (CHAT, {"model": MODEL, "messages": "Hello"}, 400, "invalid_type", "messages"),
        (CHAT, {"model": MODEL, "messages": HELLO, "max_tokens": "8"}, 400, "invalid_type", "max_tokens"),
        (CHAT, {"model": MODEL, "messages": HELLO, "max_tokens": 0}, 400, "invalid_type", "max_tokens"),
        (CHAT, {"model": MODEL, "messages": HELLO, "temperature": "hot"}, 400, "invalid_type", "temperature"),
        (CHAT, {"model": MODEL, "messages": HELLO, "temperature": -1}, 400, "invalid_value", "temperature"),
        (CHAT, {"model": MODEL, "messages": HELLO, "top_p": 0}, 400, "invalid_value", "top_p"),
        (CHAT, {"model": MODEL, "messages": HELLO, "seed": 1.5}, 400, "invalid_type", "seed"),
        (CHAT, {"model": MODEL, "messages": HELLO, "ignore_eos": "yes"}, 400, "invalid_type", "ignore_eos"),
        (CHAT, {"model": MODEL, "messages": HELLO, "stream": "yes"}, 400, "invalid_type", "stream"),
        (CHAT, {"model": MODEL, "messages": HELLO, "n": 2}, 400, "unsupported_value", "n"),
        (CHAT, {"model": MODEL, "messages": HELLO, "stop": ["\n"]}, 400, "unsupported_value", "stop"),
        (CHAT, {"model": MODEL, "messages": HELLO, "logprobs": True}, 400, "unsupported_value", "logprobs"),
        (
            CHAT,
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            },
            400,
            "invalid_value",
            "messages[0].content[0]",
        ),
        (
            CHAT,
            {"model": MODEL, "messages": HELLO, "max_tokens": MAX_MODEL_LEN},
            400,
            "context_length_exceeded",
            "messages",
        ),
        (COMPLETIONS, {"model": MODEL, "prompt": "x " * MAX_MODEL_LEN}, 400, "context_length_exceeded", "prompt"),
        (COMPLETIONS, {"model": MODEL, "prompt": ""}, 400, "invalid_value", "prompt"),
        (COMPLETIONS, {"model": MODEL, "prompt": ["a", "b"]}, 400, "unsupported_value", "prompt"),
        (COMPLETIONS, {"model": MODEL, "prompt": [1, 2]}, 400, "invalid_type", "prompt"),
    ],
)
async def test_mistakes_are_openai_error_bodies(
    served: tuple[TorchWorker, str],
    http: aiohttp.ClientSession,
    path: str,
    body: bytes | dict[str, Any],
    status: int,
    code: str,
    param: str | None,
) -> None:
    worker, url = served
    data = body if isinstance(body, bytes) else None
    json = body if isinstance(body, dict) else None
    async with http.post(url + path, data=data, json=json, headers={"content-type": "application/json"}) as response:
        assert response.status == status
        assert response.content_type == "application/json"
        error = (await response.json())["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)
    assert isinstance(error["message"], str) and error["message"]
    metrics = worker.metrics.render().decode()
    assert metric(metrics, "vllm:request_queue_time_seconds_count") == 0, "the request reached the queue"
