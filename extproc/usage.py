"""Reading ``usage`` out of upstream responses: whole JSON bodies and SSE streams cut at arbitrary bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


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
    """Incremental SSE parser: events may be split anywhere across chunks; ``usage`` is the last one seen.

    Counts content events too, so that a stream cut before its usage chunk still says how far it got.
    """

    def __init__(self, max_event_bytes: int = 1024 * 1024) -> None:
        self._buffer = bytearray()
        self._max_event_bytes = max_event_bytes
        self.last_usage: Usage | None = None
        self.data_events = 0
        self.done = False

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk.replace(b"\r\n", b"\n") if b"\r" in chunk else chunk
        while True:
            end = self._buffer.find(b"\n\n")
            if end < 0:
                if len(self._buffer) > self._max_event_bytes:
                    self._buffer.clear()
                return
            event = bytes(self._buffer[:end])
            del self._buffer[: end + 2]
            self._event(event)

    def _event(self, event: bytes) -> None:
        data = b"\n".join(line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:"))
        if not data:
            return
        if data == b"[DONE]":
            self.done = True
            return
        self.data_events += 1
        try:
            usage = usage_from(orjson.loads(data))
        except orjson.JSONDecodeError:
            return
        if usage is not None:
            self.last_usage = usage
