"""Builders and fakes shared by the endpoint picker's unit tests: metrics, candidates, a clock, pools."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from epp.metrics.snapshot import CacheConfig, EndpointMetrics
from epp.pools.directory import Pool, PoolDirectory
from epp.pools.static import StaticEndpoints
from epp.scheduling.interfaces import Candidate


def endpoint_metrics(
    waiting: int = 0,
    running: int = 0,
    kv_cache_usage: float = 0.0,
    scraped_at: float = 0.0,
    cache: CacheConfig | None = None,
) -> EndpointMetrics:
    return EndpointMetrics(
        scraped_at=scraped_at, waiting=waiting, running=running, kv_cache_usage=kv_cache_usage, cache=cache
    )


def candidate(
    address: str,
    waiting: int = 0,
    running: int = 0,
    kv_cache_usage: float = 0.0,
    pending: int = 0,
    pending_tokens: int = 0,
    cache: CacheConfig | None = None,
) -> Candidate:
    return Candidate(address, endpoint_metrics(waiting, running, kv_cache_usage, cache=cache), pending, pending_tokens)


@dataclass
class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MutableSource:
    """An ``EndpointSource`` whose members a test replaces at will (as a Kubernetes watch would)."""

    def __init__(self, *members: str) -> None:
        self.current: tuple[str, ...] = members

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def directory(pools: Mapping[str, tuple[str, ...]], models: Mapping[str, str]) -> PoolDirectory:
    """Static pools by name, and which pool serves each model."""
    built = {name: Pool(name, StaticEndpoints(members)) for name, members in pools.items()}
    return PoolDirectory(
        MappingProxyType(built), MappingProxyType({model: built[pool] for model, pool in models.items()})
    )
