"""Token quotas, pure: what a request reserves at admission and what it is charged when the response ends.

Admission reserves an estimate: the prompt (from the request body) plus the completion the client allows
(``max_completion_tokens`` / ``max_tokens``, else ``limits.reserve_default_completion_tokens``), the total bounded by
``limits.reserve_max_tokens``. A request whose reservation does not fit a window is refused (429) before it reaches
a worker, so running many requests at once cannot overshoot a limit by more than the estimates' error (charging
only after the fact, as Kuadrant does, overshoots without bound). The completion part is a bound whenever the
client sets ``max_tokens``; the prompt part is a bound when ``limits.reserve_bytes_per_token`` is 1 (the default 4
is a typical-case estimate): only then is a window never exceeded at all.

When the response ends the real ``usage`` replaces the reservation; when no usage arrives (upstream error, client
gone mid-stream) what is known is charged instead: the prompt estimate plus one token per streamed chunk of text —
never zero and never the whole reservation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from extproc.usage import Usage
from tokenlabs.quota import tier_limits
from tokenlabs.quota.tier_limits import window_limits
from tokenlabs.quota.windows import Limit
from tokenlabs.settings import LimitSettings, TierSettings

# Chat templates wrap every message in a few tokens of their own.
MESSAGE_OVERHEAD_TOKENS = 4


@dataclass(frozen=True)
class TokenLimits:
    """A tier's token windows: on all tokens, and optionally on prompt and completion tokens separately."""

    total: tuple[Limit, ...]
    prompt: tuple[Limit, ...]
    completion: tuple[Limit, ...]

    @property
    def any(self) -> bool:
        return bool(self.total or self.prompt or self.completion)


def token_limits(tier: TierSettings) -> TokenLimits:
    return TokenLimits(
        total=tier_limits.token_limits(tier),
        prompt=window_limits(tier.prompt_tokens_per_minute, tier.prompt_tokens_per_day),
        completion=window_limits(tier.completion_tokens_per_minute, tier.completion_tokens_per_day),
    )


@dataclass(frozen=True)
class Tokens:
    """A count of tokens for each window family: what is reserved, or what is charged."""

    prompt: int
    completion: int
    total: int

    @classmethod
    def of(cls, prompt: int, completion: int) -> Tokens:
        return cls(prompt, completion, prompt + completion)


def _text_tokens(text: str, bytes_per_token: int) -> int:
    return math.ceil(len(text.encode("utf-8", "surrogatepass")) / bytes_per_token)


def _content_tokens(value: Any, image_tokens: int, bytes_per_token: int) -> int:
    """Tokens a JSON value of a prompt may cost: text by its size, an image part at a flat rate (its base64 size
    says nothing about its tokens), anything else (tool calls, names) by its text."""
    if isinstance(value, str):
        return _text_tokens(value, bytes_per_token)
    if isinstance(value, list):
        return sum(_content_tokens(item, image_tokens, bytes_per_token) for item in value)
    if isinstance(value, dict):
        if value.get("type") in ("image_url", "input_image", "image"):
            return image_tokens
        return sum(_content_tokens(item, image_tokens, bytes_per_token) for item in value.values())
    return 1 if value is not None else 0


def prompt_estimate(document: Mapping[str, Any], image_tokens: int, bytes_per_token: int = 4) -> int:
    """Prompt tokens of a chat (``messages``) or completions (``prompt``) request, from its text: UTF-8 bytes over
    ``bytes_per_token``. 4 is typical of BPE tokenizers on English, not a bound; 1 is a bound for byte-level
    tokenizers (no token covers less than a byte), at the price of reserving about four times the prompt."""
    messages = document.get("messages")
    if isinstance(messages, list):
        return sum(
            MESSAGE_OVERHEAD_TOKENS + _content_tokens(message, image_tokens, bytes_per_token) for message in messages
        )
    prompt = document.get("prompt")
    if isinstance(prompt, list) and all(isinstance(item, int) for item in prompt):
        return len(prompt)  # already token ids
    return _content_tokens(prompt, image_tokens, bytes_per_token)


def completion_allowance(document: Mapping[str, Any], default: int) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = document.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return default


def reservation(document: Mapping[str, Any], limits: LimitSettings) -> Tokens:
    """What a request reserves; prompt and completion bounded so that their sum stays within the cap."""
    cap = limits.reserve_max_tokens
    estimate = prompt_estimate(document, limits.reserve_image_tokens, limits.reserve_bytes_per_token)
    prompt = min(max(estimate, 1), cap)
    completion = min(completion_allowance(document, limits.reserve_default_completion_tokens), cap - prompt)
    return Tokens.of(prompt, completion)


def charge(reserved: Tokens, usage: Usage | None, streamed_chunks: int) -> Tokens:
    """What the request really costs: the worker's ``usage`` when it reported one (its ``total_tokens`` is what
    the total windows are charged), else the prompt estimate plus one token per streamed chunk of text."""
    if usage is not None:
        return Tokens(usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)
    return Tokens.of(reserved.prompt, streamed_chunks)
