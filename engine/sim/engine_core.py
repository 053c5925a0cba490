"""A worker's engine: runs the scheduler's steps in (injectable) time, delivers tokens, keeps the metrics.

One asyncio task per worker runs the loop while there is work, and ends when there is none: an idle worker has no
task and no timer. Each step costs one timer however many sequences it serves, and wakes each consumer that got a
token once; a consumer that fell behind takes every token it missed in one batch.
"""

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final

from engine.sim.config import SimConfig
from engine.sim.latency import front_end_seconds, step_seconds
from engine.sim.metrics import WorkerMetrics
from engine.sim.planning import GenerationPlan
from engine.sim.scheduler import Scheduler, StepPlan, StepResult
from engine.sim.sequence import Sequence, SlotHolder, Status

_logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

# A timer that fires late delays its step; the next step is shortened by up to this much to keep the configured
# pace. Beyond it the process is overloaded, and catching up would only send bursts.
_MAX_CATCH_UP_SECONDS: Final = 0.002


class EngineCore:
    def __init__(
        self, scheduler: Scheduler, config: SimConfig, metrics: WorkerMetrics, *, clock: Clock, sleep: Sleep
    ) -> None:
        self._scheduler = scheduler
        self._config = config
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None

    async def generate(self, plan: GenerationPlan) -> AsyncGenerator[tuple[str, ...], None]:
        """Yield the plan's output tokens in order, each batch as soon as the engine has sampled it.

        The request first spends the front end's fixed delay outside the engine, then queues. Close the iterator
        (``contextlib.aclosing``) when abandoning it: that aborts the sequence, freeing its batching slot and KV
        blocks at once.
        """
        arrival = self._clock()
        if self._config.ttft_base_ms:
            await self._sleep(front_end_seconds(self._config))
        sequence = Sequence(plan, arrival, queued_at=self._clock())
        self._scheduler.add(sequence)
        self._wake()
        sent = 0
        try:
            while sent < len(plan.output_tokens):
                if sequence.num_output == sent:
                    await self._next_sample(sequence)
                    continue
                available = sequence.num_output
                yield plan.output_tokens[sent:available]
                sent = available
        finally:
            if sequence.status is not Status.FINISHED:
                self._remove(sequence)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a batching slot but no KV blocks for the duration of the block, once the queue has let it in."""
        holder = SlotHolder(self._clock(), asyncio.get_running_loop().create_future())
        self._scheduler.add(holder)
        self._wake()
        try:
            await holder.waiter
            yield
        finally:
            self._remove(holder)

    async def _next_sample(self, sequence: Sequence) -> None:
        if sequence.error is not None:
            raise sequence.error
        sequence.waiter = asyncio.get_running_loop().create_future()
        try:
            await sequence.waiter
        finally:
            sequence.waiter = None

    def _wake(self) -> None:
        if self._task is None and self._scheduler.has_work:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _remove(self, entry: Sequence | SlotHolder) -> None:
        self._scheduler.remove(entry)
        if self._task is not None and not self._scheduler.has_work:
            # The step under way serves only aborted requests: nobody waits for its end.
            self._task.cancel()
            self._task = None
        else:
            # A freed slot may let the queue's head in while the loop is stopped.
            self._wake()

    async def _run(self) -> None:
        step_end = self._clock()
        try:
            while True:
                now = self._clock()
                plan = self._scheduler.plan_step()
                self._record_scheduling(plan, now)
                if not plan.chunks:
                    return
                step_end = max(step_end, now - _MAX_CATCH_UP_SECONDS) + step_seconds(
                    self._config, plan.num_decoding, plan.num_prefill_tokens
                )
                await self._sleep(max(0.0, step_end - self._clock()))
                self._deliver(self._scheduler.finish_step(plan), self._clock())
        except Exception as error:
            _logger.exception("the engine loop failed; failing its requests")
            self._fail_everyone(error)
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    def _record_scheduling(self, plan: StepPlan, now: float) -> None:
        metrics = self._metrics
        for sequence in plan.admitted:
            metrics.request_queue_time.observe(now - sequence.queued_at)
            # vLLM counts lookups only where it looks, and only at a request's first admission.
            if self._config.enable_prefix_caching:
                metrics.prefix_cache_queries.inc(sequence.num_prompt_tokens)
                metrics.prefix_cache_hits.inc(sequence.num_cached_tokens)
        if plan.preempted:
            metrics.num_preemptions.inc(len(plan.preempted))
        for holder in plan.admitted_holders:
            metrics.request_queue_time.observe(now - holder.queued_at)
            # A holder whose client was cancelled a moment ago is still queued until its task runs; that task
            # then gives the slot back.
            if not holder.waiter.done():
                holder.waiter.set_result(None)

    def _deliver(self, result: StepResult, now: float) -> None:
        metrics = self._metrics
        if result.sampled:
            metrics.generation_tokens.inc(len(result.sampled))
        for sequence in result.sampled:
            if sequence.num_output == 1:
                metrics.prompt_tokens.inc(sequence.num_prompt_tokens)
                metrics.time_to_first_token.observe(now - sequence.arrival)
            else:
                metrics.inter_token_latency.observe(now - sequence.last_token_at)
            sequence.last_token_at = now
            if sequence.waiter is not None and not sequence.waiter.done():
                sequence.waiter.set_result(None)
        for sequence in result.finished:
            metrics.e2e_request_latency.observe(now - sequence.arrival)
            metrics.record_success(sequence.plan.finish_reason)

    def _fail_everyone(self, error: Exception) -> None:
        scheduler = self._scheduler
        for entry in [*scheduler.running, *scheduler.waiting]:
            scheduler.remove(entry)
            if isinstance(entry, Sequence):
                entry.error = error
            if entry.waiter is not None and not entry.waiter.done():
                entry.waiter.set_exception(error)
