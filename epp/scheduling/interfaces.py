"""The extension points of a scheduling cycle, and the plain data they work on.

A cycle: the framework drops endpoints without fresh metrics, runs the filters in order, runs every scorer on the
survivors, adds up ``weight * score`` per candidate and lets the picker rank them; observers then learn the pick.
Plugins are pure with respect to the cycle: they read the request, the candidates and ``CycleState`` (scratch
space shared by the plugins of one cycle) and never await.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from epp.metrics.snapshot import EndpointMetrics
from epp.prefix import CHARS_PER_TOKEN


@dataclass(frozen=True, slots=True)
class SchedulingRequest:
    """What the picker knows of a request: its model and the prompt text that decides cache locality."""

    model: str
    prompt: str = ""

    @property
    def prompt_tokens(self) -> int:
        """An estimate: about four characters per token."""
        return len(self.prompt) // CHARS_PER_TOKEN + 1


@dataclass(frozen=True, slots=True)
class Candidate:
    """An endpoint with fresh metrics. ``pending`` requests (``pending_tokens`` prompt tokens) were sent to it by
    this picker after those metrics were scraped, so they are not in them yet."""

    address: str
    metrics: EndpointMetrics
    pending: int = 0
    pending_tokens: int = 0


CycleState = dict[str, object]


class Filter(Protocol):
    """Keeps the candidates that may serve the request.

    Contract: returns a subsequence of ``candidates`` (same objects, same order). Returning none means no endpoint
    fits; the framework then answers 503, it never falls back to the filtered-out ones.
    """

    def filter(
        self, request: SchedulingRequest, candidates: Sequence[Candidate], state: CycleState
    ) -> Sequence[Candidate]: ...


class Scorer(Protocol):
    """Rates each candidate for the request.

    Contract: one value per candidate, in candidate order, in [0, 1] where 1 is best; equal values when the scorer
    cannot tell candidates apart. The framework clamps values into [0, 1] (NaN counts as 0) and applies the
    profile's weight, so a scorer never knows its weight.
    """

    def score(
        self, request: SchedulingRequest, candidates: Sequence[Candidate], state: CycleState
    ) -> Sequence[float]: ...


class Picker(Protocol):
    """Ranks candidates by their weighted total score.

    Contract: returns at most ``count`` distinct candidates, best first (the first is the pick, the rest are
    fallbacks Envoy tries in order); never returns an empty list for a non-empty input. Ties are broken with
    ``rng`` so that equal endpoints share load.
    """

    def pick(
        self, candidates: Sequence[Candidate], totals: Sequence[float], count: int, rng: random.Random
    ) -> list[Candidate]: ...


class PickObserver(Protocol):
    """Learns each pick (e.g. to index the prompt's prefix on the chosen endpoint), and forgets what it learned
    about an endpoint that left its pool (a new pod may reuse the address). Must be cheap and not raise."""

    def picked(self, request: SchedulingRequest, chosen: Candidate, state: CycleState) -> None: ...

    def forget(self, address: str) -> None: ...
