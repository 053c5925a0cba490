"""Least-outstanding-requests picking. Pure: candidates and counts in, an ordered endpoint list out.

The first endpoint is the pick; the rest are fallbacks in order of preference (Envoy tries them if the first
cannot be reached). Ties are broken by the injected random source, so equal endpoints share load evenly.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence

from tokenlabs.errors import Unavailable


def eligible(endpoints: Sequence[str], subset_hint: Collection[str] | None) -> list[str]:
    """Endpoints allowed by the subset hint (all when there is none)."""
    if subset_hint is None:
        return list(endpoints)
    return [endpoint for endpoint in endpoints if endpoint in subset_hint]


def pick(
    candidates: Sequence[str], outstanding: Mapping[str, int], rng: random.Random, fallbacks: int = 2
) -> list[str]:
    if not candidates:
        raise Unavailable("No inference endpoint can take this request.", code="no_healthy_endpoint")
    shuffled = list(candidates)
    rng.shuffle(shuffled)
    ranked = sorted(shuffled, key=lambda endpoint: outstanding.get(endpoint, 0))
    return ranked[: 1 + fallbacks]


class OutstandingRequests:
    """Requests sent to each endpoint and not yet answered, as seen by this picker process."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    @property
    def counts(self) -> Mapping[str, int]:
        return self._counts

    def acquire(self, endpoint: str) -> None:
        self._counts[endpoint] = self._counts.get(endpoint, 0) + 1

    def release(self, endpoint: str) -> None:
        remaining = self._counts.get(endpoint, 0) - 1
        if remaining > 0:
            self._counts[endpoint] = remaining
        else:
            self._counts.pop(endpoint, None)
