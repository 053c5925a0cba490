"""/metrics exposes vLLM's metric names, labelled with the served model, and tells the truth about the worker."""

import asyncio
from collections.abc import Mapping

import aiohttp

from engine.sim.config import SimConfig
from engine.sim.worker import SimWorker
from tests.engine.sim.support import FAST_CONFIG, HeldSleep, instant_sleep, served, wait_until
from tests.helpers import metric_samples

MODEL = frozenset({("model_name", "sim")})


async def scrape(http: aiohttp.ClientSession, base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with http.get(base + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return metric_samples(await response.text())


async def post_status(http: aiohttp.ClientSession, url: str, body: Mapping[str, object]) -> int:
    async with http.post(url, json=body) as response:
        await response.read()
        return response.status


async def test_idle_worker_exposes_every_metric_at_zero(http: aiohttp.ClientSession) -> None:
    async with served(SimWorker(("sim", "alias"), FAST_CONFIG, sleep=instant_sleep)) as base:
        samples = await scrape(http, base)

    for gauge in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"):
        assert samples[(gauge, MODEL)] == 0.0
    for counter in ("prompt_tokens", "generation_tokens", "prefix_cache_queries", "prefix_cache_hits"):
        assert samples[(f"vllm:{counter}_total", MODEL)] == 0.0
    assert samples[("vllm:time_to_first_token_seconds_count", MODEL)] == 0.0
    assert samples[("vllm:e2e_request_latency_seconds_count", MODEL)] == 0.0
    cache_labels = frozenset({("block_size", "16"), ("num_gpu_blocks", "1024"), ("enable_prefix_caching", "False")})
    assert samples[("vllm:cache_config_info", cache_labels)] == 1.0


async def test_counters_and_histograms_after_requests(http: aiohttp.ClientSession) -> None:
    async with served(SimWorker(("sim",), FAST_CONFIG, sleep=instant_sleep)) as base:
        # "a b c" is 3 prompt tokens; FAST_CONFIG answers with 4 tokens, max_tokens cuts the second to 2.
        await post_status(http, base + "/v1/completions", {"model": "sim", "prompt": "a b c"})
        await post_status(http, base + "/v1/completions", {"model": "sim", "prompt": "a b c", "max_tokens": 2})
        samples = await scrape(http, base)

    assert samples[("vllm:prompt_tokens_total", MODEL)] == 6.0
    assert samples[("vllm:prefix_cache_queries_total", MODEL)] == 6.0
    assert samples[("vllm:prefix_cache_hits_total", MODEL)] == 0.0
    assert samples[("vllm:generation_tokens_total", MODEL)] == 6.0
    assert samples[("vllm:request_success_total", MODEL | {("finished_reason", "stop")})] == 1.0
    assert samples[("vllm:request_success_total", MODEL | {("finished_reason", "length")})] == 1.0
    assert samples[("vllm:time_to_first_token_seconds_count", MODEL)] == 2.0
    assert samples[("vllm:e2e_request_latency_seconds_count", MODEL)] == 2.0


async def test_ttft_and_e2e_follow_the_injected_clock(http: aiohttp.ClientSession) -> None:
    now = [100.0]

    async def sleep_on_fake_clock(seconds: float) -> None:
        now[0] += seconds

    # Prefill 10 ms + 0 per token, then 3 more tokens at 5 ms: TTFT 0.010 s, end-to-end 0.025 s.
    config = SimConfig(ttft_base_ms=10, ttft_per_prompt_token_ms=0, itl_ms=5, itl_batch_factor=0, output_tokens=4)
    worker = SimWorker(("sim",), config, clock=lambda: now[0], sleep=sleep_on_fake_clock)
    async with served(worker) as base:
        await post_status(http, base + "/v1/completions", {"model": "sim", "prompt": "hi"})
        samples = await scrape(http, base)

    assert abs(samples[("vllm:time_to_first_token_seconds_sum", MODEL)] - 0.010) < 1e-9
    assert abs(samples[("vllm:e2e_request_latency_seconds_sum", MODEL)] - 0.025) < 1e-9


async def test_gauges_show_requests_in_flight_and_return_to_zero(http: aiohttp.ClientSession) -> None:
    sleep = HeldSleep()
    # Blocks of 4 tokens: each in-flight request holds ceil(3 prompt tokens / 4) = 1 of the 10 blocks.
    config = SimConfig(max_num_seqs=2, num_kv_blocks=10, block_size=4, output_tokens=4)
    worker = SimWorker(("sim",), config, sleep=sleep)
    async with served(worker) as base:
        body = {"model": "sim", "prompt": "a b c"}
        requests = [asyncio.create_task(post_status(http, base + "/v1/completions", body)) for _ in range(3)]
        await wait_until(lambda: worker.scheduler.waiting == 1)
        in_flight = await scrape(http, base)
        sleep.release()
        statuses = await asyncio.gather(*requests)
        after = await scrape(http, base)

    assert in_flight[("vllm:num_requests_running", MODEL)] == 2.0
    assert in_flight[("vllm:num_requests_waiting", MODEL)] == 1.0
    assert in_flight[("vllm:kv_cache_usage_perc", MODEL)] == 0.2
    assert statuses == [200, 200, 200]
    for gauge in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"):
        assert after[(gauge, MODEL)] == 0.0


async def test_each_worker_has_its_own_registry(http: aiohttp.ClientSession) -> None:
    first = SimWorker(("first",), FAST_CONFIG, sleep=instant_sleep)
    second = SimWorker(("second",), FAST_CONFIG, sleep=instant_sleep)
    async with served(first) as first_base, served(second) as second_base:
        await post_status(http, first_base + "/v1/completions", {"model": "first", "prompt": "hello"})
        first_samples = await scrape(http, first_base)
        second_samples = await scrape(http, second_base)

    assert first_samples[("vllm:generation_tokens_total", frozenset({("model_name", "first")}))] == 4.0
    assert second_samples[("vllm:generation_tokens_total", frozenset({("model_name", "second")}))] == 0.0
    assert all(labels != frozenset({("model_name", "first")}) for _, labels in second_samples)
