"""What the picker knows about each endpoint: the vLLM metrics of its last good scrape, immutable.

Readers take ``MetricsBoard.current`` once per scheduling cycle; the scraper replaces it with a new mapping on every
scrape, so a cycle never sees a half-updated view and never waits for a scrape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from epp.metrics.text_format import samples

WAITING: Final = "vllm:num_requests_waiting"
RUNNING: Final = "vllm:num_requests_running"
KV_CACHE_USAGE: Final = "vllm:kv_cache_usage_perc"
# vLLM before 0.10 named the same fraction after the GPU.
KV_CACHE_USAGE_LEGACY: Final = "vllm:gpu_cache_usage_perc"
CACHE_CONFIG: Final = "vllm:cache_config_info"
PREFIX_QUERIES: Final = "vllm:prefix_cache_queries_total"
PREFIX_HITS: Final = "vllm:prefix_cache_hits_total"
WANTED: Final = frozenset(
    {WAITING, RUNNING, KV_CACHE_USAGE, KV_CACHE_USAGE_LEGACY, CACHE_CONFIG, PREFIX_QUERIES, PREFIX_HITS}
)


@dataclass(frozen=True, slots=True)
class CacheConfig:
    block_size: int
    num_blocks: int
    prefix_caching: bool

    @property
    def capacity_tokens(self) -> int:
        return self.block_size * self.num_blocks


@dataclass(frozen=True, slots=True)
class EndpointMetrics:
    """One endpoint's state at ``scraped_at`` (monotonic seconds, taken when the scrape was sent: requests
    picked after that instant may not show in it)."""

    scraped_at: float
    waiting: int = 0
    running: int = 0
    kv_cache_usage: float = 0.0
    cache: CacheConfig | None = None
    prefix_cache_queries: float = 0.0
    prefix_cache_hits: float = 0.0


def read_vllm_metrics(text: str, scraped_at: float) -> EndpointMetrics:
    """The picker's view of a vLLM ``/metrics`` body. Gauges of several engines in one server add up (queues) or
    take the fullest (KV cache); a server without a gauge reports it as 0. Raises ``MetricsFormatError`` when a
    wanted line is malformed and ``ValueError`` when neither queue gauge is present (not a vLLM server)."""
    waiting = running = 0.0
    usage = 0.0
    queries = hits = 0.0
    cache: CacheConfig | None = None
    seen: set[str] = set()
    for sample in samples(text, WANTED):
        seen.add(sample.name)
        if sample.value != sample.value and sample.name != CACHE_CONFIG:
            continue  # NaN: that engine cannot tell; it must not turn the other engines' sum into NaN (then 0)
        if sample.name == WAITING:
            waiting += sample.value
        elif sample.name == RUNNING:
            running += sample.value
        elif sample.name in (KV_CACHE_USAGE, KV_CACHE_USAGE_LEGACY):
            usage = max(usage, sample.value)
        elif sample.name == PREFIX_QUERIES:
            queries += sample.value
        elif sample.name == PREFIX_HITS:
            hits += sample.value
        elif sample.name == CACHE_CONFIG:
            cache = _cache_config(sample.labels) or cache
    if WAITING not in seen and RUNNING not in seen:
        raise ValueError(f"neither {WAITING} nor {RUNNING} is exposed: not a vLLM metrics endpoint")
    return EndpointMetrics(
        scraped_at=scraped_at,
        waiting=_count(waiting),
        running=_count(running),
        kv_cache_usage=min(max(usage, 0.0), 1.0) if usage == usage else 0.0,
        cache=cache,
        prefix_cache_queries=queries,
        prefix_cache_hits=hits,
    )


def _count(value: float) -> int:
    return int(value) if value == value and 0 <= value < 1e9 else 0


def _cache_config(labels: Mapping[str, str]) -> CacheConfig | None:
    try:
        block_size = int(labels["block_size"])
        num_blocks = int(labels.get("num_gpu_blocks") or 0)
    except (KeyError, ValueError):
        return None
    if block_size <= 0 or num_blocks <= 0:
        return None
    return CacheConfig(block_size, num_blocks, labels.get("enable_prefix_caching", "True").lower() == "true")


class MetricsBoard:
    """The latest good metrics of every scraped endpoint. Written only by the scraper, on the event loop."""

    def __init__(self) -> None:
        self._current: Mapping[str, EndpointMetrics] = MappingProxyType({})
        self._changed: asyncio.Future[None] | None = None

    @property
    def current(self) -> Mapping[str, EndpointMetrics]:
        return self._current

    def publish(self, address: str, metrics: EndpointMetrics) -> None:
        self._current = MappingProxyType({**self._current, address: metrics})
        if self._changed is not None:
            if not self._changed.done():
                self._changed.set_result(None)
            self._changed = None

    async def changed(self) -> None:
        """Returns after the next publish."""
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._changed)

    def forget(self, addresses: Collection[str]) -> None:
        if any(address in self._current for address in addresses):
            self._current = MappingProxyType(
                {address: metrics for address, metrics in self._current.items() if address not in addresses}
            )
