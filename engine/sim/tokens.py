"""Deterministic tokenisation of prompts and the synthetic text the simulator "generates".

Tokens are kept as strings rather than only counted so that the prefix cache can hash blocks of them.
The tokeniser is a rough stand-in for a BPE vocabulary: a token is a run of at most six letters or three digits,
or one other character, each taking a single space in front of it along; other whitespace runs are one token.
"""

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

_TOKEN_PATTERN: Final = re.compile(r" ?[^\W\d_]{1,6}| ?\d{1,3}| ?(?:[^\w\s]|_)|\s+")

# An image costs a fixed share of the context, as a vision encoder's patch embeddings would.
IMAGE_TOKENS: Final = 64

# Each word is a single token by the tokeniser above (letters only, at most six), so a completion built from
# them re-tokenises to exactly the number of tokens streamed; the call signs make the text obviously synthetic.
_VOCABULARY: Final = (
    "alpha", "bravo", "delta", "echo", "golf", "hotel", "india", "juliet", "kilo", "lima", "mike",
    "oscar", "papa", "quebec", "romeo", "sierra", "tango", "victor", "xray", "yankee", "zulu",
)  # fmt: skip


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ImagePart:
    url: str


ContentPart = TextPart | ImagePart


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: tuple[ContentPart, ...]


def tokenize(text: str) -> list[str]:
    """Split text into tokens; joining them gives the text back."""
    return _TOKEN_PATTERN.findall(text)


def chat_prompt_tokens(messages: Sequence[ChatMessage]) -> list[str]:
    """Render messages through a minimal chat template: a role marker and an end marker around each message,
    then the marker that opens the assistant's turn, as a real template adds before generation."""
    tokens: list[str] = []
    for message in messages:
        tokens.append(f"<|{message.role}|>")
        for part in message.content:
            tokens.extend(_content_part_tokens(part))
        tokens.append("<|end|>")
    tokens.append("<|assistant|>")
    return tokens


def _content_part_tokens(part: ContentPart) -> list[str]:
    if isinstance(part, TextPart):
        return tokenize(part.text)
    # Tokens derived from the image's URL keep two different images from looking like a shared prefix.
    image_token = f"<|image:{_digest(part.url.encode())[:8].hex()}|>"
    return [image_token] * IMAGE_TOKENS


def synthetic_completion(prompt_tokens: Sequence[str], count: int) -> tuple[str, ...]:
    """``count`` output tokens that depend only on the prompt, so a replayed request gets the same answer."""
    seed = _digest("\x00".join(prompt_tokens).encode())
    words = (_VOCABULARY[_word_index(seed, position)] for position in range(count))
    return tuple(word if position == 0 else f" {word}" for position, word in enumerate(words))


def _word_index(seed: bytes, position: int) -> int:
    draw = _digest(seed + position.to_bytes(8, "big"))
    return int.from_bytes(draw[:4], "big") % len(_VOCABULARY)


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()
