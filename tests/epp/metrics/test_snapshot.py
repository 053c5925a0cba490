"""From a vLLM /metrics page to the picker's EndpointMetrics, and the board that publishes them."""

from __future__ import annotations

import asyncio

import pytest

from engine.sim.config import SimConfig
from engine.sim.metrics import WorkerMetrics
from epp.metrics.snapshot import CacheConfig, EndpointMetrics, MetricsBoard, read_vllm_metrics
from epp.metrics.text_format import MetricsFormatError
from tests.epp.fakes import endpoint_metrics


def test_reads_the_sim_workers_page() -> None:
    config = SimConfig(block_size=32, num_kv_blocks=500)
    page = WorkerMetrics("m", config, lambda: 3, lambda: 7, lambda: 0.25).render().decode()
    metrics = read_vllm_metrics(page, scraped_at=12.5)
    assert (metrics.scraped_at, metrics.running, metrics.waiting, metrics.kv_cache_usage) == (12.5, 3, 7, 0.25)
    assert metrics.cache is not None
    assert (metrics.cache.block_size, metrics.cache.num_blocks) == (32, 500)
    assert metrics.cache.capacity_tokens == 32 * 500


def test_engines_of_one_server_add_up_queues_and_take_the_fullest_cache() -> None:
    page = """
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 3.0
vllm:num_requests_waiting{engine="1",model_name="m"} 4.0
vllm:num_requests_running{engine="0",model_name="m"} 2.0
vllm:num_requests_running{engine="1",model_name="m"} 5.0
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.3
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.6
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 100.0
vllm:prefix_cache_queries_total{engine="1",model_name="m"} 50.0
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 40.0
vllm:prefix_cache_hits_total{engine="1",model_name="m"} 10.0
"""
    metrics = read_vllm_metrics(page, scraped_at=1.0)
    assert metrics == EndpointMetrics(
        scraped_at=1.0,
        waiting=7,
        running=7,
        kv_cache_usage=0.6,
        cache=None,
        prefix_cache_queries=150.0,
        prefix_cache_hits=50.0,
    )


def test_legacy_gpu_cache_usage_gauge() -> None:
    # vLLM before 0.10 named the KV cache usage after the GPU.
    page = "vllm:num_requests_waiting 1\nvllm:gpu_cache_usage_perc 0.75\n"
    assert read_vllm_metrics(page, 0.0).kv_cache_usage == 0.75


def test_a_server_without_some_gauges_reports_zero() -> None:
    metrics = read_vllm_metrics("vllm:num_requests_running 2\n", 0.0)
    assert metrics == EndpointMetrics(scraped_at=0.0, running=2)


@pytest.mark.parametrize(
    "page",
    [
        "",
        "# HELP vllm:num_requests_waiting but no sample\n",
        'vllm:kv_cache_usage_perc 0.5\nvllm:cache_config_info{block_size="16"} 1\n',
        "process_cpu_seconds_total 12.0\n",
    ],
)
def test_a_page_without_either_queue_gauge_is_not_vllm(page: str) -> None:
    with pytest.raises(ValueError, match="not a vLLM metrics endpoint"):
        read_vllm_metrics(page, 0.0)


def test_a_malformed_wanted_line_is_a_format_error() -> None:
    with pytest.raises(MetricsFormatError):
        read_vllm_metrics('vllm:num_requests_waiting{model_name="m" 1\n', 0.0)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ('block_size="16",num_gpu_blocks="2048",enable_prefix_caching="True"', CacheConfig(16, 2048, True)),
        ('block_size="16",num_gpu_blocks="2048",enable_prefix_caching="False"', CacheConfig(16, 2048, False)),
        ('block_size="16",num_gpu_blocks="2048",enable_prefix_caching="true"', CacheConfig(16, 2048, True)),
        ('block_size="16",num_gpu_blocks="2048"', CacheConfig(16, 2048, True)),  # vLLM caches prefixes by default
        ('block_size="16",num_gpu_blocks="None"', None),  # vLLM writes None before it has profiled the GPU
        ('block_size="16",num_gpu_blocks=""', None),
        ('block_size="16"', None),
        ('num_gpu_blocks="2048"', None),
        ('block_size="0",num_gpu_blocks="2048"', None),
        ('block_size="x",num_gpu_blocks="2048"', None),
    ],
)
def test_cache_config_info(labels: str, expected: CacheConfig | None) -> None:
    page = f"vllm:num_requests_waiting 0\nvllm:cache_config_info{{{labels}}} 1.0\n"
    assert read_vllm_metrics(page, 0.0).cache == expected


def test_a_later_unreadable_cache_config_keeps_a_good_one() -> None:
    page = (
        "vllm:num_requests_waiting 0\n"
        'vllm:cache_config_info{block_size="16",num_gpu_blocks="100"} 1\n'
        'vllm:cache_config_info{block_size="16",num_gpu_blocks="None"} 1\n'
    )
    assert read_vllm_metrics(page, 0.0).cache == CacheConfig(16, 100, True)


def test_nan_infinite_and_negative_values() -> None:
    # A NaN sample counts as absent, so it neither zeroes nor poisons the other engines' sum (3 + NaN + 1 = 4).
    page = """
vllm:num_requests_waiting{engine="0"} 3
vllm:num_requests_waiting{engine="1"} NaN
vllm:num_requests_waiting{engine="2"} 1
vllm:num_requests_running -2
vllm:kv_cache_usage_perc{engine="0"} NaN
vllm:kv_cache_usage_perc{engine="1"} 0.5
"""
    metrics = read_vllm_metrics(page, 0.0)
    assert (metrics.waiting, metrics.running, metrics.kv_cache_usage) == (4, 0, 0.5)  # a negative count reads 0
    # Usage is a fraction: clamped into [0, 1]; alone and NaN it reads 0.
    assert read_vllm_metrics("vllm:num_requests_waiting 0\nvllm:kv_cache_usage_perc +Inf\n", 0.0).kv_cache_usage == 1
    assert read_vllm_metrics("vllm:num_requests_waiting 0\nvllm:kv_cache_usage_perc NaN\n", 0.0).kv_cache_usage == 0
    only_nan = read_vllm_metrics("vllm:num_requests_waiting NaN\n", 0.0)  # still a vLLM server, with nothing queued
    assert only_nan.waiting == 0


def test_board_publish_replaces_the_mapping_and_never_mutates_a_published_one() -> None:
    board = MetricsBoard()
    assert dict(board.current) == {}
    first = endpoint_metrics(waiting=1, scraped_at=1.0)
    board.publish("a:1", first)
    seen = board.current
    board.publish("b:1", endpoint_metrics(waiting=2, scraped_at=2.0))
    board.publish("a:1", endpoint_metrics(waiting=3, scraped_at=3.0))
    assert dict(seen) == {"a:1": first}  # a cycle holding the old view keeps a consistent one
    assert {address: metrics.waiting for address, metrics in board.current.items()} == {"a:1": 3, "b:1": 2}
    with pytest.raises(TypeError):
        board.current["c:1"] = first  # type: ignore[index]


def test_board_forget() -> None:
    board = MetricsBoard()
    board.publish("a:1", endpoint_metrics())
    board.publish("b:1", endpoint_metrics())
    before = board.current
    board.forget({"x:1"})
    assert board.current is before  # nothing to forget: the same mapping
    board.forget({"a:1", "x:1"})
    assert set(board.current) == {"b:1"}
    assert set(before) == {"a:1", "b:1"}


async def test_board_changed_returns_after_the_next_publish() -> None:
    board = MetricsBoard()
    board.publish("a:1", endpoint_metrics())  # before anyone waits: does not count for later waiters
    waiters = [asyncio.create_task(board.changed()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(waiter.done() for waiter in waiters)
    waiters[0].cancel()  # one waiter giving up (a queue timeout) must not fail the others
    await asyncio.sleep(0)
    assert not waiters[1].done()
    board.forget({"a:1"})  # forgetting is not a publish
    await asyncio.sleep(0)
    assert not waiters[1].done()
    board.publish("b:1", endpoint_metrics())
    await asyncio.wait_for(asyncio.gather(*waiters[1:]), 1.0)
    later = asyncio.create_task(board.changed())
    await asyncio.sleep(0)
    assert not later.done()  # a new publish is needed for a new wait
    board.publish("b:1", endpoint_metrics())
    await asyncio.wait_for(later, 1.0)
