"""The picker's pools, by name and by the model names routed to them. Built once in ``main()``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from epp.pools import EndpointSource
from epp.pools.static import StaticEndpoints
from tokenlabs.picker_settings import PoolSettings
from tokenlabs.settings import Settings

PodSourceFactory = Callable[[PoolSettings], EndpointSource]


@dataclass(frozen=True)
class Pool:
    name: str
    source: EndpointSource
    metrics_path: str = "/metrics"

    @property
    def endpoints(self) -> tuple[str, ...]:
        return self.source.current


@dataclass(frozen=True)
class PoolDirectory:
    pools: Mapping[str, Pool]
    by_model: Mapping[str, Pool]

    @classmethod
    def from_settings(cls, settings: Settings, pod_source: PodSourceFactory | None = None) -> PoolDirectory:
        """Static pools list their endpoints; selector pools get their source from ``pod_source`` (required
        when the config has any)."""
        pools: dict[str, Pool] = {}
        for name, pool in settings.pools.items():
            if pool.pods is None:
                source: EndpointSource = StaticEndpoints(tuple(endpoint.address for endpoint in pool.endpoints))
            elif pod_source is None:
                raise ValueError(f"pool {name!r} selects Kubernetes pods but no pod source was given")
            else:
                source = pod_source(pool)
            pools[name] = Pool(name, source, pool.metrics_path)
        by_model = {model: pools[spec.pool] for model, spec in settings.models.items()}
        return cls(MappingProxyType(pools), MappingProxyType(by_model))

    def for_model(self, model: str) -> Pool | None:
        return self.by_model.get(model)

    async def start(self) -> None:
        await asyncio.gather(*(pool.source.start() for pool in self.pools.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(pool.source.stop() for pool in self.pools.values()), return_exceptions=True)
