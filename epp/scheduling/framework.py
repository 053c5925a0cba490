"""Runs one scheduling cycle of a profile: candidates → filters → weighted scorers → picker → observers.

The framework enforces the plugin contracts stated in ``interfaces.py``: it clamps scores, applies weights, refuses
a filter's or picker's empty answer with 503, and times every plugin call and the whole cycle.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from epp.metrics.snapshot import EndpointMetrics
from epp.pending import PendingPicks
from epp.scheduling.interfaces import Candidate, CycleState, Filter, Picker, PickObserver, SchedulingRequest, Scorer
from epp.scheduling.prefix_view import uncached_tokens
from tokenlabs.errors import Unavailable
from tokenlabs.telemetry import Histogram

# Buckets of the per-plugin timing histogram: plugin calls take tens of microseconds.
PLUGIN_BUCKETS = (0.00001, 0.00003, 0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03)


@dataclass(frozen=True)
class WeightedScorer:
    name: str
    weight: float
    scorer: Scorer


@dataclass(frozen=True)
class Profile:
    name: str
    filters: tuple[tuple[str, Filter], ...]
    scorers: tuple[WeightedScorer, ...]
    picker: tuple[str, Picker]
    observers: tuple[PickObserver, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """``ranked``: the pick, then fallbacks. ``uncached_tokens``: prompt tokens the pick is expected to compute."""

    ranked: tuple[Candidate, ...]
    uncached_tokens: int

    @property
    def chosen(self) -> Candidate:
        return self.ranked[0]

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(candidate.address for candidate in self.ranked)


def candidates(
    endpoints: Sequence[str],
    board: Mapping[str, EndpointMetrics],
    pending: PendingPicks,
    now: float,
    staleness_s: float,
    subset_hint: Collection[str] | None = None,
) -> list[Candidate]:
    """The endpoints allowed by the subset hint whose metrics are at most ``staleness_s`` old."""
    found = []
    for address in endpoints:
        if subset_hint is not None and address not in subset_hint:
            continue
        metrics = board.get(address)
        if metrics is None or now - metrics.scraped_at > staleness_s:
            continue
        count, tokens = pending.since(address, metrics.scraped_at)
        found.append(Candidate(address, metrics, count, tokens))
    return found


class Scheduler:
    def __init__(
        self, profile: Profile, fallbacks: int, rng: random.Random, plugin_timing: Histogram | None = None
    ) -> None:
        self.profile = profile
        self._count = 1 + fallbacks
        self._rng = rng
        self._timing = plugin_timing

    def schedule(self, request: SchedulingRequest, found: Sequence[Candidate]) -> Decision:
        """Raises ``Unavailable`` when no candidate is left to pick."""
        if not found:
            raise Unavailable(
                "No inference endpoint with fresh metrics can take this request.", code="no_healthy_endpoint"
            )
        state: CycleState = {}
        for name, plugin in self.profile.filters:
            started = time.perf_counter()
            found = plugin.filter(request, found, state)
            self._time("filter", name, started)
            if not found:
                raise Unavailable(f"No inference endpoint passes the '{name}' filter.", code="no_endpoint_fits")
        totals = [0.0] * len(found)
        for weighted in self.profile.scorers:
            started = time.perf_counter()
            values = weighted.scorer.score(request, found, state)
            self._time("scorer", weighted.name, started)
            if len(values) != len(found):
                raise RuntimeError(
                    f"scorer {weighted.name!r} returned {len(values)} scores for {len(found)} candidates"
                )
            weight = weighted.weight
            for index, value in enumerate(values):
                totals[index] += weight * _clamped(value)
        name, picker = self.profile.picker
        started = time.perf_counter()
        ranked = picker.pick(found, totals, self._count, self._rng)
        self._time("picker", name, started)
        if not ranked:
            raise RuntimeError(f"picker {name!r} picked nothing from {len(found)} candidates")
        for observer in self.profile.observers:
            observer.picked(request, ranked[0], state)
        return Decision(tuple(ranked), uncached_tokens(request, ranked[0].address, state))

    def forget(self, address: str) -> None:
        """Drop what the profile's observers learned about an endpoint that left its pool."""
        for observer in self.profile.observers:
            observer.forget(address)

    def _time(self, extension_point: str, plugin: str, started: float) -> None:
        if self._timing is not None:
            self._timing.observe((extension_point, plugin), time.perf_counter() - started)


def _clamped(value: float) -> float:
    if math.isnan(value) or value <= 0.0:
        return 0.0
    return 1.0 if value >= 1.0 else value
