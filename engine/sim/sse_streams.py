"""The server-sent event frames of a streamed response, one token at a time, as vLLM and OpenAI send them.

Chat streams open with an empty assistant delta, carry one content delta per token and close with a chunk that
only holds the finish reason; completion streams carry one chunk per token, the last with its finish reason.
Both then send the usage chunk when the client asked for ``stream_options.include_usage``, and ``[DONE]``.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from engine.sim.planning import GenerationPlan
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


class EventStream(Protocol):
    def token_frames(self, choice_index: int, position: int, token: str) -> bytes: ...

    def closing_frames(self) -> bytes: ...


def usage_of(plans: Sequence[GenerationPlan]) -> Usage:
    return Usage(
        prompt_tokens=sum(len(plan.prompt_tokens) for plan in plans),
        completion_tokens=sum(len(plan.output_tokens) for plan in plans),
    )


@dataclass(frozen=True)
class ChatEventStream:
    header: ResponseHeader
    plan: GenerationPlan
    include_usage: bool

    def token_frames(self, choice_index: int, position: int, token: str) -> bytes:
        content = sse_frame(chat_chunk(self.header, {"content": token}, None))
        if position > 0:
            return content
        # Sent with the first token rather than at once, as vLLM does, so a client timing the first chunk
        # measures the time to first token.
        return sse_frame(chat_chunk(self.header, {"role": "assistant", "content": ""}, None)) + content

    def closing_frames(self) -> bytes:
        finish = sse_frame(chat_chunk(self.header, {}, self.plan.finish_reason))
        if not self.include_usage:
            return finish + SSE_DONE
        return finish + sse_frame(chat_usage_chunk(self.header, usage_of([self.plan]))) + SSE_DONE


@dataclass(frozen=True)
class CompletionEventStream:
    header: ResponseHeader
    plans: tuple[GenerationPlan, ...]
    include_usage: bool

    def token_frames(self, choice_index: int, position: int, token: str) -> bytes:
        plan = self.plans[choice_index]
        finish_reason = plan.finish_reason if position == len(plan.output_tokens) - 1 else None
        return sse_frame(completion_chunk(self.header, choice_index, token, finish_reason))

    def closing_frames(self) -> bytes:
        if not self.include_usage:
            return SSE_DONE
        return sse_frame(completion_usage_chunk(self.header, usage_of(self.plans))) + SSE_DONE
