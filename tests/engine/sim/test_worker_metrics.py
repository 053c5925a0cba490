"""/metrics exposes vLLM's metric names, labelled with the served model, and tells the truth about the worker."""

import asyncio
from collections.abc import Mapping

import aiohttp
import pytest

from engine.sim.config import SimConfig
from engine.sim.worker import SimWorker
from tests.engine.sim.support import FAST_CONFIG, HeldSleep, VirtualTime, instant_sleep, served, wait_until
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
    counters = ("prompt_tokens", "generation_tokens", "prefix_cache_queries", "prefix_cache_hits", "num_preemptions")
    for counter in counters:
        assert samples[(f"vllm:{counter}_total", MODEL)] == 0.0
    for histogram in ("time_to_first_token", "inter_token_latency", "e2e_request_latency", "request_queue_time"):
        assert samples[(f"vllm:{histogram}_seconds_count", MODEL)] == 0.0
    cache_labels = frozenset({("block_size", "16"), ("num_gpu_blocks", "1024"), ("enable_prefix_caching", "True")})
    assert samples[("vllm:cache_config_info", cache_labels)] == 1.0


async def test_cache_config_info_tells_when_prefix_caching_is_off(http: aiohttp.ClientSession) -> None:
    config = SimConfig(num_kv_blocks=64, block_size=8, enable_prefix_caching=False)
    async with served(SimWorker(("sim",), config, sleep=instant_sleep)) as base:
        samples = await scrape(http, base)

    cache_labels = frozenset({("block_size", "8"), ("num_gpu_blocks", "64"), ("enable_prefix_caching", "False")})
    assert samples[("vllm:cache_config_info", cache_labels)] == 1.0


async def test_counters_and_histograms_after_requests(http: aiohttp.ClientSession) -> None:
    async with served(SimWorker(("sim",), FAST_CONFIG, sleep=instant_sleep)) as base:
        # "a b c" is 3 prompt tokens; FAST_CONFIG answers with 4 tokens, max_tokens cuts the second to 2.
        await post_status(http, base + "/v1/completions", {"model": "sim", "prompt": "a b c"})
        await post_status(http, base + "/v1/completions", {"model": "sim", "prompt": "a b c", "max_tokens": 2})
        samples = await scrape(http, base)

    assert samples[("vllm:prompt_tokens_total", MODEL)] == 6.0
    assert samples[("vllm:prefix_cache_queries_total", MODEL)] == 6.0
    assert samples[("vllm:prefix_cache_hits_total", MODEL)] == 0.0  # 3 tokens fill no 16-token block
    assert samples[("vllm:generation_tokens_total", MODEL)] == 6.0
    assert samples[("vllm:request_success_total", MODEL | {("finished_reason", "stop")})] == 1.0
    assert samples[("vllm:request_success_total", MODEL | {("finished_reason", "length")})] == 1.0
    assert samples[("vllm:time_to_first_token_seconds_count", MODEL)] == 2.0
    assert samples[("vllm:inter_token_latency_seconds_count", MODEL)] == 4.0  # 3 + 1 gaps
    assert samples[("vllm:e2e_request_latency_seconds_count", MODEL)] == 2.0
    assert samples[("vllm:request_queue_time_seconds_count", MODEL)] == 2.0


async def test_latency_histograms_follow_the_injected_clock(http: aiohttp.ClientSession) -> None:
    time = VirtualTime()
    # Front end 10 ms, then a prefill step of 5 ms (no per-token cost) gives the first token at 15 ms; three
    # decode steps of 5 ms each end the request at 30 ms.
    config = SimConfig(ttft_base_ms=10, ttft_per_prompt_token_ms=0, itl_ms=5, itl_batch_factor=0, output_tokens=4)
    worker = SimWorker(("sim",), config, clock=time.clock, sleep=time.sleep)
    async with served(worker) as base:
        await post_status(http, base + "/v1/completions", {"model": "sim", "prompt": "hi"})
        samples = await scrape(http, base)

    assert samples[("vllm:time_to_first_token_seconds_sum", MODEL)] == pytest.approx(0.015)
    assert samples[("vllm:inter_token_latency_seconds_sum", MODEL)] == pytest.approx(0.015)
    assert samples[("vllm:inter_token_latency_seconds_count", MODEL)] == 3.0
    assert samples[("vllm:e2e_request_latency_seconds_sum", MODEL)] == pytest.approx(0.030)
    assert samples[("vllm:request_queue_time_seconds_sum", MODEL)] == 0.0


async def test_gauges_show_requests_in_flight_and_return_to_zero(http: aiohttp.ClientSession) -> None:
    sleep = HeldSleep()
    # Blocks of 4 tokens: each running request holds ceil(3 prompt tokens / 4) = 1 of the 10 blocks.
    config = SimConfig(ttft_base_ms=0, max_num_seqs=2, num_kv_blocks=10, block_size=4, output_tokens=4)
    worker = SimWorker(("sim",), config, sleep=sleep)
    async with served(worker) as base:
        url, body = base + "/v1/completions", {"model": "sim", "prompt": "a b c"}
        requests = [asyncio.create_task(post_status(http, url, body))]
        await wait_until(lambda: sleep.held == 1)  # the first request's prefill step
        requests += [asyncio.create_task(post_status(http, url, body)) for _ in range(2)]
        await wait_until(lambda: worker.scheduler.num_waiting == 2)
        sleep.step()  # the next step admits one of the two into the second slot
        await wait_until(lambda: sleep.held == 1)
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
