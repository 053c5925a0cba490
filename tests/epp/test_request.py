"""What the picker reads of a request body: the model it was told, and the prompt text."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from epp.request import prompt_text, scheduling_request
from epp.scheduling.interfaces import SchedulingRequest


@pytest.mark.parametrize(
    ("document", "prompt"),
    [
        (
            {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]},
            "system\nBe brief.\nuser\nHi\n",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is "},
                            {"type": "image_url", "image_url": {"url": "data:..."}},
                            {"type": "text", "text": "this?"},
                        ],
                    }
                ]
            },
            "user\nWhat is this?\n",  # text parts only, in order
        ),
        ({"messages": [{"content": None}, "not a message", {"role": "user"}]}, "\n\nuser\n\n"),
        ({"prompt": "Once upon"}, "Once upon"),
        ({"prompt": ["a", "b"]}, "a\nb"),
        ({"prompt": [1, 2, 3]}, ""),  # token ids: no text to hash
        ({"input": "Say this aloud."}, "Say this aloud."),  # speech
        ({"input": ["x"]}, ""),
        ({}, ""),
    ],
)
def test_prompt_text(document: dict[str, Any], prompt: str) -> None:
    assert prompt_text(document) == prompt


def test_scheduling_request_keeps_the_model_from_the_header() -> None:
    body = orjson.dumps({"model": "from-the-body", "prompt": "hello"})
    assert scheduling_request("from-extproc", body) == SchedulingRequest("from-extproc", "hello")


@pytest.mark.parametrize("body", [b"", b"{not json", b"[1, 2]", b'"text"', b"null", b"\xff\xfe"])
def test_an_unreadable_body_is_scheduled_without_a_prompt(body: bytes) -> None:
    assert scheduling_request("m", body) == SchedulingRequest("m", "")


def test_prompt_tokens_estimate() -> None:
    assert SchedulingRequest("m").prompt_tokens == 1  # never 0
    assert SchedulingRequest("m", "abc").prompt_tokens == 1
    assert SchedulingRequest("m", "a" * 400).prompt_tokens == 101  # about four characters per token, plus one
