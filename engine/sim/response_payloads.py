"""The JSON bodies and server-sent event frames of OpenAI-compatible responses, shaped as vLLM sends them."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

SSE_DONE: Final = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    def body(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


@dataclass(frozen=True)
class ResponseHeader:
    """The fields every body and chunk of one response repeats."""

    id: str
    created: int
    model: str

    def fields(self, object_type: str) -> dict[str, Any]:
        return {"id": self.id, "object": object_type, "created": self.created, "model": self.model}


@dataclass(frozen=True)
class FinishedChoice:
    text: str
    finish_reason: str


def sse_frame(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def chat_completion(header: ResponseHeader, choice: FinishedChoice, usage: Usage) -> dict[str, Any]:
    return {
        **header.fields("chat.completion"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": choice.text},
                "logprobs": None,
                "finish_reason": choice.finish_reason,
            }
        ],
        "usage": usage.body(),
    }


def chat_chunk(header: ResponseHeader, delta: dict[str, str], finish_reason: str | None) -> dict[str, Any]:
    return {
        **header.fields("chat.completion.chunk"),
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def chat_usage_chunk(header: ResponseHeader, usage: Usage) -> dict[str, Any]:
    return {**header.fields("chat.completion.chunk"), "choices": [], "usage": usage.body()}


def text_completion(header: ResponseHeader, choices: Sequence[FinishedChoice], usage: Usage) -> dict[str, Any]:
    return {
        **header.fields("text_completion"),
        "choices": [
            {"index": index, "text": choice.text, "logprobs": None, "finish_reason": choice.finish_reason}
            for index, choice in enumerate(choices)
        ],
        "usage": usage.body(),
    }


def completion_chunk(header: ResponseHeader, index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
    return {
        **header.fields("text_completion"),
        "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}],
    }


def completion_usage_chunk(header: ResponseHeader, usage: Usage) -> dict[str, Any]:
    return {**header.fields("text_completion"), "choices": [], "usage": usage.body()}


def model_list(model_names: Sequence[str], created: int, max_model_len: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "vllm",
                "root": model_names[0],
                "parent": None,
                "max_model_len": max_model_len,
            }
            for name in model_names
        ],
    }
