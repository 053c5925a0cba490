"""The tiny model served in-process, decoders wrapped to hold or slow their steps, and metrics readers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager

from engine.serve.model import LoadedModel
from engine.serve.options import ServeOptions
from engine.serve.server import listening
from engine.serve.worker import Decoder, DecoderFactory, TorchWorker
from engine.spec.drafters import Drafter
from engine.spec.models.tiny import TinySpec
from engine.spec.runner import Runner
from engine.spec.sampling import AcceptanceRule
from engine.spec.speculative import SpecStats, SpeculativeDecoder

# As the spec tests' model: four layers, greedy output that wanders (initializer_range 0.1), a tokenizer trained on
# 40 files (about a second).
TINY = TinySpec(num_layers=4, initializer_range=0.1, training_files=40)
MODEL = "tiny-llama"
MAX_MODEL_LEN = 256
OPTIONS = ServeOptions(model="tiny", served_model_names=(MODEL,), dtype="fp32", threads=1, max_model_len=MAX_MODEL_LEN)


class WrappedDecoder:
    """A real decoder whose steps pass through ``before_step`` (called on the decode thread) first."""

    def __init__(self, inner: SpeculativeDecoder, before_step: Callable[[WrappedDecoder], None]) -> None:
        self.inner = inner
        self.steps_taken = 0
        self._before_step = before_step

    @property
    def stats(self) -> SpecStats:
        return self.inner.stats

    @property
    def finished(self) -> bool:
        return self.inner.finished

    @property
    def stopped_at_eos(self) -> bool:
        return self.inner.stopped_at_eos

    @property
    def generated(self) -> int:
        return self.inner.generated

    def step(self) -> list[int]:
        self._before_step(self)
        self.steps_taken += 1
        return self.inner.step()


class Decoders:
    """A decoder factory that records every decoder it makes. ``hold()`` makes each decoder's steps after its
    first (the prefill) wait until ``release()``; ``step_seconds`` slows every step down."""

    def __init__(self, step_seconds: float = 0.0) -> None:
        self.made: list[WrappedDecoder] = []
        self.step_seconds = step_seconds
        self._released = threading.Event()
        self._released.set()

    def __call__(
        self,
        runner: Runner,
        drafter: Drafter,
        prompt_ids: Sequence[int],
        max_new_tokens: int,
        eos: Collection[int],
        max_draft: int,
        rule: AcceptanceRule,
    ) -> Decoder:
        inner = SpeculativeDecoder(runner, drafter, prompt_ids, max_new_tokens, eos, max_draft, rule)
        decoder = WrappedDecoder(inner, self._before_step)
        self.made.append(decoder)
        return decoder

    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def _before_step(self, decoder: WrappedDecoder) -> None:
        if decoder.steps_taken > 0:
            # A bound, so that a failing test can never leave the decode thread blocked for good.
            self._released.wait(timeout=30)
        if self.step_seconds:
            time.sleep(self.step_seconds)

    def total_stats(self) -> SpecStats:
        total = SpecStats()
        for decoder in self.made:
            for name in ("steps", "drafts", "draft_tokens", "accepted_tokens"):
                setattr(total, name, getattr(total, name) + getattr(decoder.stats, name))
        return total


@asynccontextmanager
async def served_worker(
    model: LoadedModel, decoders: DecoderFactory | None = None, options: ServeOptions = OPTIONS
) -> AsyncIterator[tuple[TorchWorker, str]]:
    """A worker for ``model`` behind the production server on a free loopback port: (worker, base URL)."""
    worker = TorchWorker(model, options, make_decoder=decoders or SpeculativeDecoder)
    try:
        async with listening(worker, "127.0.0.1", 0, drain_seconds=1.0) as url:
            yield worker, url
    finally:
        if isinstance(decoders, Decoders):
            decoders.release()
        worker.close()


async def wait_until(condition: Callable[[], bool], within_seconds: float = 10.0) -> None:
    deadline = time.monotonic() + within_seconds
    while not condition():
        assert time.monotonic() < deadline, f"condition still false after {within_seconds} s"
        await asyncio.sleep(0.005)
