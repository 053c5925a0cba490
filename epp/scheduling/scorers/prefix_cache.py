"""Rewards endpoints believed to hold the longest prefix of the prompt: the share of its blocks they hold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from epp.prefix import PrefixIndex
from epp.scheduling.interfaces import Candidate, CycleState, SchedulingRequest
from epp.scheduling.prefix_view import PrefixSettings, prefix_view


@dataclass(frozen=True)
class PrefixCacheScorer:
    index: PrefixIndex
    settings: PrefixSettings

    def score(self, request: SchedulingRequest, candidates: Sequence[Candidate], state: CycleState) -> Sequence[float]:
        view = prefix_view(self.index, self.settings, request, candidates, state)
        return [view.cached_fraction(candidate.address) for candidate in candidates]
