"""Per-tier policy, precomputed once from ``Settings`` so the check path only does lookups."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from tokenlabs.quota.tier_limits import request_limits
from tokenlabs.quota.windows import Limit
from tokenlabs.settings import ALL_ENDPOINTS, TierSettings


@dataclass(frozen=True)
class TierPolicy:
    name: str
    request_limits: tuple[Limit, ...]  # empty: no request-rate limit for this tier
    endpoints: frozenset[str] | None  # None: every endpoint

    def allows_endpoint(self, path: str) -> bool:
        return self.endpoints is None or path in self.endpoints


def tier_policies(tiers: Mapping[str, TierSettings]) -> Mapping[str, TierPolicy]:
    policies = {}
    for name, tier in tiers.items():
        policies[name] = TierPolicy(
            name=name,
            request_limits=request_limits(tier),
            endpoints=None if ALL_ENDPOINTS in tier.endpoints else frozenset(tier.endpoints),
        )
    return MappingProxyType(policies)
