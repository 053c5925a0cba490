"""The engine loop on virtual time: exact latencies, token delivery, metrics that match the state, idling."""

import asyncio
from contextlib import aclosing
from typing import Any

import pytest

from engine.sim.config import SimConfig
from engine.sim.engine_core import Clock, EngineCore, Sleep
from engine.sim.metrics import WorkerMetrics
from engine.sim.planning import GenerationPlan
from engine.sim.scheduler import Scheduler, StepPlan
from engine.sim.tokens import synthetic_completion
from tests.engine.sim.support import HeldSleep, VirtualTime, wait_until
from tests.helpers import metric_samples

MODEL = frozenset({("model_name", "sim")})


class Engine:
    """An engine core with its scheduler and metrics, as a worker wires them."""

    def __init__(self, config: SimConfig, clock: Clock, sleep: Sleep) -> None:
        self.scheduler = Scheduler(config)
        self.metrics = WorkerMetrics(
            "sim",
            config,
            running=lambda: self.scheduler.num_running,
            waiting=lambda: self.scheduler.num_waiting,
            kv_cache_usage=lambda: self.scheduler.kv_cache.usage,
        )
        self.core = EngineCore(self.scheduler, config, self.metrics, clock=clock, sleep=sleep)
        self.clock = clock

    def samples(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return metric_samples(self.metrics.render().decode())

    async def run(self, plan: GenerationPlan) -> list[tuple[float, tuple[str, ...]]]:
        """Each batch of tokens with the time it arrived."""
        batches = []
        async with aclosing(self.core.generate(plan)) as tokens:
            async for batch in tokens:
                batches.append((self.clock(), batch))
        return batches


def plan_of(prompt: list[str], output_tokens: int) -> GenerationPlan:
    return GenerationPlan(tuple(prompt), synthetic_completion(prompt, output_tokens), "stop")


def words(count: int, tag: str = "w") -> list[str]:
    return [f"{tag}{index}" for index in range(count)]


def config(**knobs: Any) -> SimConfig:
    defaults: dict[str, Any] = {"ttft_base_ms": 0, "ttft_per_prompt_token_ms": 0, "itl_ms": 4, "itl_batch_factor": 0}
    return SimConfig(**(defaults | knobs))


async def test_tokens_arrive_one_step_apart_after_a_prefill_step() -> None:
    time = VirtualTime(start=0.0)
    engine = Engine(config(ttft_per_prompt_token_ms=0.5, output_tokens=3), time.clock, time.sleep)

    batches = await engine.run(plan_of(words(10), 3))

    # Prefill: 4 ms + 10 * 0.5 ms; then one 4 ms decode step per token.
    assert [at for at, _ in batches] == pytest.approx([0.009, 0.013, 0.017])
    assert [token for _, batch in batches for token in batch] == list(synthetic_completion(words(10), 3))


async def test_a_prefix_cache_hit_shortens_the_ttft_by_exactly_the_cached_tokens_prefill() -> None:
    time = VirtualTime(start=0.0)
    engine = Engine(config(ttft_per_prompt_token_ms=1, block_size=4), time.clock, time.sleep)
    prompt = words(10)

    cold = await engine.run(plan_of(prompt, 2))
    cold_ttft = cold[0][0]
    started = time.now
    warm = await engine.run(plan_of(prompt, 2))
    warm_ttft = warm[0][0] - started

    # 8 of the 10 tokens are in two cached blocks; the last block is partial and computed again.
    assert cold_ttft == pytest.approx(0.004 + 0.010)
    assert cold_ttft - warm_ttft == pytest.approx(8 * 0.001)
    samples = engine.samples()
    assert samples[("vllm:prefix_cache_queries_total", MODEL)] == 20.0
    assert samples[("vllm:prefix_cache_hits_total", MODEL)] == 8.0
    assert samples[("vllm:time_to_first_token_seconds_sum", MODEL)] == pytest.approx(0.014 + 0.006)


async def test_without_prefix_caching_the_same_prompt_costs_the_same_and_no_lookup_is_counted() -> None:
    time = VirtualTime(start=0.0)
    uncached = config(ttft_per_prompt_token_ms=1, block_size=4, enable_prefix_caching=False)
    engine = Engine(uncached, time.clock, time.sleep)

    cold = await engine.run(plan_of(words(10), 1))
    started = time.now
    warm = await engine.run(plan_of(words(10), 1))

    assert warm[0][0] - started == pytest.approx(cold[0][0])
    assert engine.samples()[("vllm:prefix_cache_queries_total", MODEL)] == 0.0


async def test_a_request_waits_for_a_slot_and_its_ttft_counts_the_wait() -> None:
    time = VirtualTime(start=0.0)
    engine = Engine(config(max_num_seqs=1), time.clock, time.sleep)

    first, second = await asyncio.gather(engine.run(plan_of(words(3, "a"), 3)), engine.run(plan_of(words(3, "b"), 3)))

    # The first runs 0-12 ms (prefill step, two decode steps); the second is admitted by the step after.
    assert [at for at, _ in first] == pytest.approx([0.004, 0.008, 0.012])
    assert [at for at, _ in second] == pytest.approx([0.016, 0.020, 0.024])
    samples = engine.samples()
    assert samples[("vllm:request_queue_time_seconds_sum", MODEL)] == pytest.approx(0.012)
    assert samples[("vllm:time_to_first_token_seconds_sum", MODEL)] == pytest.approx(0.004 + 0.016)
    assert samples[("vllm:e2e_request_latency_seconds_sum", MODEL)] == pytest.approx(0.012 + 0.024)


async def test_inter_token_latency_grows_with_the_batch_and_with_prefills_beside_it() -> None:
    time = VirtualTime(start=0.0)
    engine = Engine(config(itl_batch_factor=0.5, ttft_per_prompt_token_ms=1), time.clock, time.sleep)
    late_plan = plan_of(words(5, "c"), 1)
    late: list[asyncio.Task[list[tuple[float, tuple[str, ...]]]]] = []

    async def first_then_late() -> list[tuple[float, tuple[str, ...]]]:
        batches = []
        async with aclosing(engine.core.generate(plan_of(words(2, "a"), 4))) as tokens:
            async for batch in tokens:
                batches.append((time.now, batch))
                if not late:  # the second step is planned by now
                    late.append(asyncio.create_task(engine.run(late_plan)))
        return batches

    first, second = await asyncio.gather(first_then_late(), engine.run(plan_of(words(2, "b"), 4)))
    third = await late[0]

    # 0-8 ms: both prefill together (4 ms + 4 tokens * 1 ms); 8-14 ms: two decoding, 4 ms * 1.5; the third
    # request arrives meanwhile, so 14-25 ms: two decoding plus its 5-token prefill; 25-31 ms: two decoding.
    assert [at for at, _ in first] == pytest.approx([0.008, 0.014, 0.025, 0.031])
    assert [at for at, _ in second] == [at for at, _ in first]
    assert [at for at, _ in third] == pytest.approx([0.025])
    samples = engine.samples()
    assert samples[("vllm:inter_token_latency_seconds_count", MODEL)] == 6.0
    assert samples[("vllm:inter_token_latency_seconds_sum", MODEL)] == pytest.approx(2 * (0.006 + 0.011 + 0.006))


async def test_a_preempted_stream_continues_without_losing_or_repeating_tokens() -> None:
    time = VirtualTime(start=0.0)
    engine = Engine(config(num_kv_blocks=4, block_size=2), time.clock, time.sleep)
    older, newer = plan_of(words(3, "o"), 4), plan_of(words(3, "n"), 4)

    batches = await asyncio.gather(engine.run(older), engine.run(newer))

    assert [token for _, batch in batches[0] for token in batch] == list(older.output_tokens)
    assert [token for _, batch in batches[1] for token in batch] == list(newer.output_tokens)
    # The newer one sampled twice with the older, was preempted at 12 ms for a block, waited for the older to
    # finish at 16 ms and recomputed its uncached tokens in one step (4 ms) before decoding on.
    assert [at for at, _ in batches[1]] == pytest.approx([0.004, 0.008, 0.020, 0.024])
    samples = engine.samples()
    assert samples[("vllm:num_preemptions_total", MODEL)] == 1.0
    assert samples[("vllm:generation_tokens_total", MODEL)] == 8.0
    assert samples[("vllm:prompt_tokens_total", MODEL)] == 6.0
    # Only first admissions count as prefix cache lookups, as in vLLM.
    assert samples[("vllm:prefix_cache_queries_total", MODEL)] == 6.0


async def test_metrics_equal_the_engine_state_at_every_step() -> None:
    sleep = HeldSleep()
    engine = Engine(config(num_kv_blocks=5, block_size=2, max_num_seqs=2), VirtualTime().clock, sleep)
    plans = [plan_of(words(3, tag), 4) for tag in "abc"]
    requests = asyncio.gather(*(engine.run(plan) for plan in plans))
    seen = []
    while not requests.done():
        await asyncio.sleep(0.001)
        if sleep.held:
            samples = engine.samples()
            scheduler = engine.scheduler
            assert samples[("vllm:num_requests_running", MODEL)] == scheduler.num_running
            assert samples[("vllm:num_requests_waiting", MODEL)] == scheduler.num_waiting
            assert samples[("vllm:kv_cache_usage_perc", MODEL)] == scheduler.kv_cache.usage
            seen.append((scheduler.num_running, scheduler.num_waiting, scheduler.kv_cache.usage))
            sleep.step()
    await requests

    assert len(seen) > 6
    assert (2, 1, 0.8) in seen  # two running with 2 blocks each, the third queued
    assert engine.samples()[("vllm:kv_cache_usage_perc", MODEL)] == 0.0


async def test_an_idle_engine_has_no_task_and_a_client_leaving_mid_step_stops_the_step() -> None:
    sleep = HeldSleep()
    engine = Engine(config(), VirtualTime().clock, sleep)
    before = asyncio.all_tasks()
    tokens = engine.core.generate(plan_of(words(3), 5))
    pending = asyncio.ensure_future(anext(tokens))
    await wait_until(lambda: sleep.held == 1)
    assert len(asyncio.all_tasks() - before) == 2  # the consumer and the engine loop

    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    await tokens.aclose()
    await asyncio.sleep(0)

    assert asyncio.all_tasks() == before
    assert (engine.scheduler.num_running, engine.scheduler.kv_cache.usage) == (0, 0.0)


@pytest.mark.parametrize("failing_plan", [1, 2, 3])
async def test_a_failing_engine_fails_its_requests_instead_of_leaving_them_waiting(
    failing_plan: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    time = VirtualTime()
    engine = Engine(config(), time.clock, time.sleep)
    plan_step = engine.scheduler.plan_step
    plans = 0

    def failing() -> StepPlan:
        nonlocal plans
        plans += 1
        if plans == failing_plan:
            raise RuntimeError("scheduler bug")
        return plan_step()

    monkeypatch.setattr(engine.scheduler, "plan_step", failing)

    with pytest.raises(RuntimeError, match="scheduler bug"):
        await engine.run(plan_of(words(3), 3))
    assert "the engine loop failed" in caplog.text
    assert (engine.scheduler.num_running, engine.scheduler.num_waiting, engine.scheduler.kv_cache.usage) == (0, 0, 0)


async def test_a_slot_holder_cancelled_as_the_engine_admits_it_gives_the_slot_back() -> None:
    sleep = HeldSleep()
    engine = Engine(config(max_num_seqs=2), VirtualTime().clock, sleep)
    generation = asyncio.create_task(engine.run(plan_of(words(3), 3)))
    release_first = asyncio.Event()

    async def hold(release: asyncio.Event) -> None:
        async with engine.core.slot():
            await release.wait()

    first = asyncio.create_task(hold(release_first))
    await wait_until(lambda: engine.scheduler.num_running == 2 and sleep.held == 1)
    second = asyncio.create_task(hold(asyncio.Event()))
    await wait_until(lambda: engine.scheduler.num_waiting == 1)
    release_first.set()
    await first

    sleep.step()  # the engine's next plan admits the second holder...
    second.cancel()  # ...whose cancellation runs only after that
    with pytest.raises(asyncio.CancelledError):
        await second
    sleep.release()
    await generation

    assert (engine.scheduler.num_running, engine.scheduler.num_waiting) == (0, 0)
