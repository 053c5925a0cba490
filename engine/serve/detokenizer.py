"""Text deltas of a growing list of token ids, for streaming.

A token may end partway through a UTF-8 character (byte-level BPE splits emoji and accented letters over several
tokens); decoding then ends in U+FFFD, the replacement character, which must not be sent: the next token completes
the character. So a step's text is held back, as vLLM holds it, while the decoded text ends in U+FFFD, and only
what decoding shows to be final is emitted. Each step decodes a short window instead of every id so far (the
offsets vLLM's detokenizer keeps): the window starts where the text was last complete, and the delta is what it
decodes to beyond the text of its already-emitted part. For byte-level tokenizers the deltas add up to decoding
every id at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

REPLACEMENT_CHARACTER = "\ufffd"


class IncrementalDetokenizer:
    def __init__(self, decode: Callable[[Sequence[int]], str]) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._prefix_offset = 0  # the window's start: the text before it has been emitted and is complete
        self._read_offset = 0  # the ids up to here have been emitted

    def push(self, token_ids: Sequence[int]) -> str:
        """The text that ``token_ids`` add and that is final now; ``""`` while it is still incomplete."""
        self._ids.extend(token_ids)
        emitted, window = self._window()
        if len(window) <= len(emitted) or window.endswith(REPLACEMENT_CHARACTER):
            return ""
        self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
        return window[len(emitted) :]

    def flush(self) -> str:
        """Whatever is held back, at the end of the sequence (a character the model never completed stays U+FFFD)."""
        emitted, window = self._window()
        self._prefix_offset = self._read_offset = len(self._ids)
        return window[len(emitted) :]

    def _window(self) -> tuple[str, str]:
        window_ids = self._ids[self._prefix_offset :]
        return self._decode(window_ids[: self._read_offset - self._prefix_offset]), self._decode(window_ids)
