"""Inference pools: which endpoints serve which model. Built once from ``Settings``; immutable."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from tokenlabs.settings import Settings


@dataclass(frozen=True)
class Pool:
    name: str
    endpoints: tuple[str, ...]  # "ip:port", the form Envoy's ORIGINAL_DST cluster takes


@dataclass(frozen=True)
class PoolDirectory:
    by_model: Mapping[str, Pool]

    @classmethod
    def from_settings(cls, settings: Settings) -> PoolDirectory:
        pools = {
            name: Pool(name, tuple(endpoint.address for endpoint in pool.endpoints))
            for name, pool in settings.pools.items()
        }
        return cls(MappingProxyType({model: pools[spec.pool] for model, spec in settings.models.items()}))

    def for_model(self, model: str) -> Pool | None:
        return self.by_model.get(model)
