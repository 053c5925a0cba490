"""Request prompts as token ids: chat messages through the model's chat template, completion text as it is.

A checkpoint without a chat template gets a plain one (``role: content`` lines, then ``assistant:``), so any Llama
checkpoint can serve chat requests; the prompt token counts in ``usage`` follow from whichever template applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.sim.errors import ApiError, invalid_request
from engine.sim.tokens import ChatMessage, ImagePart, TextPart


def chat_prompt_ids(tokenizer: Any, messages: Sequence[ChatMessage]) -> list[int]:
    """Raises a 400 ``ApiError`` for an image part: the engine's models take text only."""
    conversation = [{"role": message.role, "content": _text(message, index)} for index, message in enumerate(messages)]
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    else:
        text = plain_chat_text(conversation)
    return _ids(tokenizer(text, add_special_tokens=False)["input_ids"])


def plain_chat_text(conversation: Sequence[dict[str, str]]) -> str:
    """The fallback template: one ``role: content`` line per message, then the assistant's turn."""
    return "".join(f"{turn['role']}: {turn['content']}\n" for turn in conversation) + "assistant:"


def completion_prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """The prompt's ids with the tokenizer's own special tokens (a BOS token where it adds one), as vLLM does."""
    return _ids(tokenizer(prompt)["input_ids"])


def empty_prompt(param: str) -> ApiError:
    return invalid_request("The prompt is empty: it must hold at least one token.", param=param)


def _text(message: ChatMessage, index: int) -> str:
    texts = []
    for part_index, part in enumerate(message.content):
        if isinstance(part, ImagePart):
            param = f"messages[{index}].content[{part_index}]"
            raise invalid_request(f"{param} is an image; this model takes text only.", param=param)
        assert isinstance(part, TextPart)
        texts.append(part.text)
    # vLLM joins a message's text parts with newlines.
    return "\n".join(texts)


def _ids(ids: Sequence[int]) -> list[int]:
    return [int(token) for token in ids]
