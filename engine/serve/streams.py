"""The server-sent event frames of a streamed response whose text arrives in pieces of any length.

The simulator's streams (``engine.sim.sse_streams``) know each answer in advance, one token per chunk; here a
decode step adds one token or several (an accepted draft), and a piece of text is sent per step, as vLLM does with
speculative decoding. The finish reason is known only at the end, so it goes in a closing chunk of its own. Chat
streams open with the assistant role together with the first text; then the usage chunk when the client asked for
``stream_options.include_usage``, and ``[DONE]``.
"""

from __future__ import annotations

from typing import Protocol

from engine.sim.response_payloads import (
    SSE_DONE,
    ResponseHeader,
    Usage,
    chat_chunk,
    chat_usage_chunk,
    completion_chunk,
    completion_usage_chunk,
    sse_frame,
)


class TextEventStream(Protocol):
    def text_frames(self, text: str) -> bytes: ...

    def closing_frames(self, finish_reason: str, usage: Usage) -> bytes: ...


class ChatTextStream:
    def __init__(self, header: ResponseHeader, include_usage: bool) -> None:
        self._header = header
        self._include_usage = include_usage
        self._opened = False

    def text_frames(self, text: str) -> bytes:
        return self._opening() + sse_frame(chat_chunk(self._header, {"content": text}, None))

    def closing_frames(self, finish_reason: str, usage: Usage) -> bytes:
        frames = self._opening() + sse_frame(chat_chunk(self._header, {}, finish_reason))
        if self._include_usage:
            frames += sse_frame(chat_usage_chunk(self._header, usage))
        return frames + SSE_DONE

    def _opening(self) -> bytes:
        if self._opened:
            return b""
        self._opened = True
        return sse_frame(chat_chunk(self._header, {"role": "assistant", "content": ""}, None))


class CompletionTextStream:
    def __init__(self, header: ResponseHeader, include_usage: bool) -> None:
        self._header = header
        self._include_usage = include_usage

    def text_frames(self, text: str) -> bytes:
        return sse_frame(completion_chunk(self._header, 0, text, None))

    def closing_frames(self, finish_reason: str, usage: Usage) -> bytes:
        frames = sse_frame(completion_chunk(self._header, 0, "", finish_reason))
        if self._include_usage:
            frames += sse_frame(completion_usage_chunk(self._header, usage))
        return frames + SSE_DONE
