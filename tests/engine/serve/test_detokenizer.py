"""Streamed text: never a half character, and the pieces add up to the whole decoded text."""

from __future__ import annotations

from collections.abc import Sequence

from engine.serve.detokenizer import REPLACEMENT_CHARACTER, IncrementalDetokenizer
from engine.serve.model import LoadedModel


def decode_bytes(token_ids: Sequence[int]) -> str:
    """A byte-level 'tokenizer': token i is byte i."""
    return bytes(token_ids).decode("utf-8", errors="replace")


def stream(detokenizer: IncrementalDetokenizer, steps: Sequence[Sequence[int]]) -> list[str]:
    return [detokenizer.push(step) for step in steps] + [detokenizer.flush()]


def test_a_character_split_over_tokens_is_held_until_complete() -> None:
    text = "né 🙂!"
    data = list(text.encode())
    pieces = stream(IncrementalDetokenizer(decode_bytes), [[byte] for byte in data])

    assert "".join(pieces) == text
    assert not any(REPLACEMENT_CHARACTER in piece for piece in pieces)
    assert pieces[: len("né".encode())] == ["n", "", "é"]  # é is two bytes: nothing after the first


def test_steps_of_several_tokens_and_a_character_never_completed() -> None:
    data = list("ab🙂c".encode())
    steps = [data[:3], data[3:5], data[5:], [0xF0, 0x9F]]  # ends with half an emoji
    pieces = stream(IncrementalDetokenizer(decode_bytes), steps)

    # A step whose text ends inside a character is held whole, as vLLM holds it.
    assert pieces[:-1] == ["", "", "ab🙂c", ""]
    assert pieces[-1] == REPLACEMENT_CHARACTER  # the end flushes what the model left incomplete


def test_invalid_bytes_inside_the_text_are_sent_once_text_follows() -> None:
    pieces = stream(IncrementalDetokenizer(decode_bytes), [[ord("a")], [0xFF], [ord("b")]])
    assert pieces == ["a", "", REPLACEMENT_CHARACTER + "b", ""]


def test_the_real_tokenizer_token_by_token_gives_the_whole_text(tiny_model: LoadedModel) -> None:
    text = "def añadir(a, b):  # suma 🙂 → ok\n    return a + b\n"
    token_ids = tiny_model.tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = stream(IncrementalDetokenizer(tiny_model.decode), [[token] for token in token_ids])

    assert "".join(pieces) == tiny_model.decode(token_ids) == text
    assert not any(REPLACEMENT_CHARACTER in piece for piece in pieces)
