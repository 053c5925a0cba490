"""The torch worker: one model, one KV cache, one sequence decoding at a time, the other requests queued.

A :class:`~engine.spec.runner.Runner` holds one sequence's cache, so the worker decodes one request at a time
(batch size one) and the others wait their turn, first come first served: that queue is what
``vllm:num_requests_waiting`` counts, and ``vllm:num_requests_running`` is 1 while a request decodes. Each decode
step (a prefill, or one draft-and-verify) runs on the worker's one decode thread, off the event loop, so a streamed
response gets its text as each step ends and a client that went away is noticed between two steps: closing the
``generate`` iterator (``contextlib.aclosing``; cancelling the task that iterates does it too) gives the model to
the next request at once. A step already under way finishes on the thread first; the next request's steps queue
behind it there, so two sequences never touch the cache at the same time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Protocol

from engine.serve.drafting import drafter_factory
from engine.serve.metrics import ServeMetrics
from engine.serve.model import LoadedModel
from engine.serve.options import ServeOptions
from engine.serve.sampling_params import SamplingParams
from engine.spec.drafters import Drafter
from engine.spec.runner import Runner
from engine.spec.sampling import AcceptanceRule
from engine.spec.speculative import SpecStats, SpeculativeDecoder

_logger = logging.getLogger(__name__)

Clock = Callable[[], float]


class Decoder(Protocol):
    """What the worker needs of a :class:`~engine.spec.speculative.SpeculativeDecoder` (see there)."""

    @property
    def stats(self) -> SpecStats: ...

    @property
    def finished(self) -> bool: ...

    @property
    def stopped_at_eos(self) -> bool: ...

    def step(self) -> list[int]: ...


# (runner, drafter, prompt ids, max new tokens, eos ids, max draft, rule): SpeculativeDecoder's own signature, so
# tests can wrap the real decoder (hold a step, slow it down, record its stats).
DecoderFactory = Callable[[Runner, Drafter, Sequence[int], int, Collection[int], int, AcceptanceRule], Decoder]


@dataclass(frozen=True)
class GenerationRequest:
    """One sequence to decode: at most ``max_tokens`` tokens after ``prompt_ids``, which fit the cache together."""

    prompt_ids: tuple[int, ...]
    max_tokens: int
    sampling: SamplingParams


@dataclass(frozen=True)
class DecodeStep:
    """The tokens one decode step added; the last step of a sequence carries why it ended: ``stop`` (an end token,
    included in ``token_ids``) or ``length`` (``max_tokens`` reached)."""

    token_ids: tuple[int, ...]
    finish_reason: str | None = None


class TorchWorker:
    """Serves ``model`` under ``options`` (the served names, the cache capacity ``max_model_len``, the drafter).

    Raises ``ValueError`` when ``max_model_len`` exceeds the model's positions and
    ``engine.spec.bench_modes.ModeUnavailableError`` when the drafter cannot be built (no exit head). Call
    :meth:`close` when done: it stops the decode thread.
    """

    def __init__(
        self,
        model: LoadedModel,
        options: ServeOptions,
        *,
        make_decoder: DecoderFactory = SpeculativeDecoder,
        clock: Clock = time.monotonic,
    ) -> None:
        self.model = model
        self.model_names = options.model_names
        self.max_model_len = options.max_model_len
        self.created = int(time.time())
        self.runner = Runner(model.weights, options.max_model_len)
        self._make_drafter = drafter_factory(
            options.spec_mode, self.runner, options.max_draft, options.head, options.gate, options.draft_len
        )
        self._max_draft = options.max_draft
        self._make_decoder = make_decoder
        self._clock = clock
        self._turn = asyncio.Lock()  # FIFO: waiters get the model in the order they asked
        self._decode_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
        self._waiting = 0
        self._decoding = False
        self.metrics = ServeMetrics(
            self.model_names[0],
            options.max_model_len,
            running=lambda: self.num_running,
            waiting=lambda: self.num_waiting,
            kv_cache_usage=lambda: self.kv_cache_usage,
        )

    @property
    def num_running(self) -> int:
        return int(self._decoding)

    @property
    def num_waiting(self) -> int:
        return self._waiting

    @property
    def kv_cache_usage(self) -> float:
        """Positions the decoding sequence holds in the cache / its capacity; 0 while nothing decodes."""
        if not self._decoding:
            return 0.0
        return max(self.runner.cache.lengths) / self.runner.cache.capacity

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[DecodeStep, None]:
        """Queue for the model, then decode ``request`` step by step, yielding each step's tokens as it ends."""
        arrival = self._clock()
        self._waiting += 1
        try:
            await self._turn.acquire()
        finally:
            self._waiting -= 1
        try:
            self._decoding = True
            self.metrics.request_queue_time.observe(self._clock() - arrival)
            decoder = self._make_decoder(
                self.runner,
                self._make_drafter(),
                request.prompt_ids,
                request.max_tokens,
                () if request.sampling.ignore_eos else self.model.eos_ids,
                self._max_draft,
                request.sampling.rule(),
            )
            loop = asyncio.get_running_loop()
            last_token_at, first = arrival, True
            while not decoder.finished:
                before = replace(decoder.stats)
                tokens = await loop.run_in_executor(self._decode_thread, decoder.step)
                now = self._clock()
                self._record_step(request, first, before, decoder.stats, len(tokens), now - last_token_at)
                last_token_at, first = now, False
                finish_reason = None
                if decoder.finished:
                    finish_reason = "stop" if decoder.stopped_at_eos else "length"
                    self.metrics.e2e_request_latency.observe(now - arrival)
                    self.metrics.record_success(finish_reason)
                yield DecodeStep(tuple(tokens), finish_reason)
        finally:
            self._decoding = False
            self._turn.release()

    def _record_step(
        self, request: GenerationRequest, first: bool, before: SpecStats, after: SpecStats, new_tokens: int, gap: float
    ) -> None:
        metrics = self.metrics
        if first:  # the prefill: it drafts nothing and gives the first token
            metrics.prompt_tokens.inc(len(request.prompt_ids))
            metrics.time_to_first_token.observe(gap)
        else:
            # One observation per step, as vLLM makes one per engine step: a step may add several tokens.
            metrics.inter_token_latency.observe(gap)
            drafted = after.draft_tokens - before.draft_tokens
            metrics.record_draft(drafted, after.accepted_tokens - before.accepted_tokens)
        metrics.generation_tokens.inc(new_tokens)

    def close(self) -> None:
        """Stops the decode thread once the step under way (if any) has ended."""
        self._decode_thread.shutdown(wait=True, cancel_futures=True)
