"""Reading ``usage`` out of upstream responses: whole JSON bodies, and SSE streams cut at arbitrary bytes.

The SSE reader can also remove the usage-only chunk that the gateway made the worker send (see
``extproc.stream_options``) while forwarding everything else unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import orjson

# A partial SSE event is held (when filtering) or buffered (when only reading) up to this size; a longer one is
# forwarded as it comes and never read.
MAX_EVENT_BYTES: Final = 1024 * 1024

# SSE line terminators are CRLF, LF or CR; an event ends at an empty line, i.e. at two terminators in a row.
# "A CR not followed by LF" keeps a CRLF from also being read as CR then LF, which would be a false empty line
# (an atomic group would too, but makes the search three times slower).
_EVENT_END: Final = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")
# The longest event end (CRLF CRLF) is 4 bytes, so one cut by a chunk boundary starts at most 3 bytes before it.
_EVENT_END_OVERLAP: Final = 3
_CR: Final = 0x0D
_LINE_END_BYTES: Final = b"\r\n"
# Chat delta fields that carry generated text: the answer, and reasoning under vLLM's old and new names.
_DELTA_TEXT_FIELDS: Final = frozenset({"content", "reasoning_content", "reasoning"})


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


def usage_from(document: Any) -> Usage | None:
    usage = document.get("usage") if isinstance(document, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    if not all(isinstance(value, int) and not isinstance(value, bool) and value >= 0 for value in (prompt, completion)):
        return None
    total = usage.get("total_tokens", prompt + completion)
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        total = prompt + completion
    return Usage(prompt, completion, total)


class JsonUsageReader:
    """Accumulates a JSON response body (up to ``limit`` bytes) and reads its ``usage`` at the end."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self.overflowed = False

    def feed(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._limit:
            self.overflowed = True
            self._parts.clear()
        elif not self.overflowed:
            self._parts.append(chunk)

    def usage(self) -> Usage | None:
        if self.overflowed:
            return None
        try:
            return usage_from(orjson.loads(b"".join(self._parts)))
        except orjson.JSONDecodeError:
            return None


class SseUsageReader:
    """Reads an OpenAI-style SSE stream fed in arbitrary byte chunks, and returns what to forward of each chunk.

    ``feed(chunk, end_of_stream)`` returns the bytes to send on in place of ``chunk``:

    * ``drop_usage_only=False``: ``chunk`` itself, always; nothing is held back.
    * ``drop_usage_only=True``: every complete event in the stream so far, in order and byte for byte, except
      the usage-only events (a ``data:`` JSON object whose ``choices`` is absent, null or empty, whose ``usage``
      is an object, and which has no ``error``), which are removed whole: all their lines (``id:``, ``event:``
      and comments included) through the empty line that ends them. A trailing partial event is held until its
      end arrives, until it outgrows ``max_event_bytes`` (it is then forwarded as it comes, and neither read nor
      removed), or until ``end_of_stream``, when everything held is returned. Concatenating the returned bytes
      gives the input minus the usage-only events, however the input was cut. (An event ending in a lone CR is
      complete at once; should the next chunk open with LF, that LF finishes its CRLF and goes where it went.)

    Events are read as the SSE specification says: lines end in CRLF, LF or CR; ``data:`` lines are joined with
    LF; a partial event at the end of the stream is not an event (it is forwarded, never read). Data that is not
    a JSON object (``[DONE]``, malformed JSON, invalid UTF-8) is never removed. What was read:

    * ``last_usage``: the ``usage`` of the last event carrying a valid one (``None`` if none did).
    * ``completion_chunks``: events whose choices carry generated text (a chat delta's ``content``,
      ``reasoning_content``/``reasoning`` or tool call, a completion's ``text``); vLLM sends one token per
      chunk, so this estimates the completion tokens of a stream that ends without usage.
    * ``streamed_text_chars``: the characters of that generated text.
    * ``done``: whether ``data: [DONE]`` arrived, i.e. the worker finished the stream.
    """

    def __init__(self, drop_usage_only: bool = False, *, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self.drop_usage_only = drop_usage_only
        self._max_event_bytes = max_event_bytes
        # The start of the current, unfinished event; while skipping an oversized event, only its last bytes, so
        # that an end cut by a chunk boundary is still found.
        self._held = bytearray()
        # How many bytes at the start of ``_held`` were already forwarded (the kept tail of an oversized event).
        self._held_sent = 0
        # ``_held`` holds no event end starting before this offset: resuming there keeps scanning linear.
        self._scan_from = 0
        self._skipping_oversized = False
        # The last event ended with a CR at the end of a chunk: an LF opening the next chunk belongs to it.
        self._ended_on_cr = False
        self._dropped_last = False
        self.last_usage: Usage | None = None
        self.completion_chunks = 0
        self.streamed_text_chars = 0
        self.done = False

    def feed(self, chunk: bytes, end_of_stream: bool = False) -> bytes:
        """Reads ``chunk`` and returns the bytes to forward in its place (see the class contract)."""
        original = chunk
        forward: list[bytes | bytearray] = []
        if self._ended_on_cr and chunk:
            self._ended_on_cr = False
            if chunk[:1] == b"\n":
                if not self._dropped_last:
                    forward.append(b"\n")
                chunk = chunk[1:]
        if self._held:
            self._held += chunk
            buffer: bytes | bytearray = self._held
        else:
            buffer = chunk
        start = 0  # where the current event begins in ``buffer``
        sent = self._held_sent  # ``buffer[:sent]`` is forwarded or dropped already
        position = self._scan_from
        any_cr = buffer.find(b"\r", position) >= 0
        while (end := self._event_end(buffer, start, position, any_cr)) >= 0:
            if self._skipping_oversized:
                self._skipping_oversized = False
                self._dropped_last = False
            else:
                self._dropped_last = self._read(buffer[start:end])
                if self._dropped_last:
                    forward.append(buffer[sent:start])
                    sent = end
            start = position = end
        if start and any_cr:
            self._ended_on_cr = start == len(buffer) and buffer[start - 1] == _CR
        if len(buffer) - start > self._max_event_bytes and not end_of_stream:
            self._skipping_oversized = True
        flush = end_of_stream or self._skipping_oversized
        stop = len(buffer) if flush else start
        # Forwarding the chunk itself when nothing was removed or held spares the common case a copy.
        unchanged = not forward and stop == len(buffer) and buffer is original
        if self.drop_usage_only and not unchanged:
            forward.append(buffer[sent:stop])
            forwarded = b"".join(forward)
        else:
            forwarded = original
        self._keep(buffer, start, flush, end_of_stream)
        return forwarded

    def _event_end(self, buffer: bytes | bytearray, start: int, position: int, any_cr: bool) -> int:
        """The end of the event that begins at ``start`` in ``buffer``, or -1; no event end begins before
        ``position``, and ``any_cr`` says whether ``buffer[position:]`` holds a CR."""
        if position == start < len(buffer) and buffer[start] in _LINE_END_BYTES and not self._skipping_oversized:
            # An empty line where an event would begin is an event without fields that ends there: it is
            # forwarded at once, and never removed along with the event after it.
            return start + (2 if buffer[start : start + 2] == b"\r\n" else 1)
        if any_cr:
            match = _EVENT_END.search(buffer, position)
            return -1 if match is None else match.end()
        found = buffer.find(b"\n\n", position)
        return -1 if found < 0 else found + 2

    def _keep(self, buffer: bytes | bytearray, start: int, flush: bool, end_of_stream: bool) -> None:
        """Holds what ``feed`` did not finish with: the partial event, or the tail of an oversized one."""
        if end_of_stream:
            self._held = bytearray()
            self._held_sent = self._scan_from = 0
            self._skipping_oversized = self._ended_on_cr = False
        elif flush:
            self._held = bytearray(buffer[-_EVENT_END_OVERLAP:])
            self._held_sent = len(self._held)
            self._scan_from = 0
        else:
            if buffer is self._held:
                del self._held[:start]
            else:  # ``_held`` was empty
                self._held += buffer[start:]
            self._held_sent = 0
            self._scan_from = max(0, len(self._held) - _EVENT_END_OVERLAP)

    def _read(self, event: bytes | bytearray) -> bool:
        """Reads one complete event; true if it is to be dropped."""
        values = []
        for line in event.splitlines():
            if line.startswith(b"data:"):
                values.append(line[6:] if line[5:6] == b" " else line[5:])
        if not values:
            return False
        data = values[0] if len(values) == 1 else b"\n".join(values)
        if data == b"[DONE]":
            self.done = True
            return False
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(document, dict):
            return False
        usage = usage_from(document)
        if usage is not None:
            self.last_usage = usage
        choices = document.get("choices")
        if choices is None or choices == []:
            # An error must reach the client even if it came with usage.
            return self.drop_usage_only and isinstance(document.get("usage"), dict) and "error" not in document
        if isinstance(choices, list):
            characters = 0
            for choice in choices:
                characters += _generated_characters(choice)
            if characters:
                self.completion_chunks += 1
                self.streamed_text_chars += characters
        return False


def _generated_characters(choice: Any) -> int:
    """Characters of generated text in one streamed choice: a completion's text, or a chat delta's."""
    if not isinstance(choice, dict):
        return 0
    text = choice.get("text")
    if isinstance(text, str):
        return len(text)
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return 0
    characters = 0
    # A delta has a field or two, so walking them beats looking up every field that could hold text.
    for name, value in delta.items():
        if isinstance(value, str):
            if name in _DELTA_TEXT_FIELDS:
                characters += len(value)
        elif name == "tool_calls" and isinstance(value, list):
            for call in value:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    characters += sum(len(part) for part in function.values() if isinstance(part, str))
    return characters
