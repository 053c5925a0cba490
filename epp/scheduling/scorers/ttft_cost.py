"""Rewards the endpoint expected to reach this request's first token soonest, counted in prompt tokens of work.

    cost = own uncached prompt tokens              (the prefix index says how much of the prompt it holds)
         + waiting * typical uncached prompt       (queued in the engine at the last scrape)
         + uncached tokens picked since the scrape (sent by this picker, not in the metrics yet)
         + running * ``running_request_tokens``    (decode steps share every engine step with prefill)

scaled by ``1 + kv_cache_penalty * usage^2`` because a nearly full cache preempts and recomputes. Scores are the
costs min-max normalised and inverted. "Typical uncached prompt" is a moving average over this scorer's picks.
Unlike separate queue and prefix scores, the cost weighs a cache hit against a queue in the same unit, so a hot
prefix stops attracting requests once the queue in front of it costs more than recomputing the prefix elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from epp.prefix import PrefixIndex
from epp.scheduling.interfaces import Candidate, CycleState, SchedulingRequest
from epp.scheduling.prefix_view import PrefixSettings, prefix_view, uncached_tokens
from epp.scheduling.scorers import lower_is_better


@dataclass
class _Average:
    value: float
    weight: float

    def add(self, sample: float) -> None:
        self.value += self.weight * (sample - self.value)


@dataclass
class TtftCostScorer:
    index: PrefixIndex
    settings: PrefixSettings
    running_request_tokens: float = 32.0
    kv_cache_penalty: float = 1.0
    initial_prompt_tokens: float = 512.0
    _typical: _Average = field(init=False)

    def __post_init__(self) -> None:
        self._typical = _Average(self.initial_prompt_tokens, 0.05)

    def score(self, request: SchedulingRequest, candidates: Sequence[Candidate], state: CycleState) -> Sequence[float]:
        view = prefix_view(self.index, self.settings, request, candidates, state)
        prompt = request.prompt_tokens
        typical = self._typical.value
        costs = []
        for candidate in candidates:
            metrics = candidate.metrics
            own = prompt * (1.0 - view.cached_fraction(candidate.address))
            cost = (
                own
                + metrics.waiting * typical
                + candidate.pending_tokens
                + metrics.running * self.running_request_tokens
            )
            usage = metrics.kv_cache_usage
            costs.append(cost * (1.0 + self.kv_cache_penalty * usage * usage))
        return lower_is_better(costs)

    def picked(self, request: SchedulingRequest, chosen: Candidate, state: CycleState) -> None:
        self._typical.add(uncached_tokens(request, chosen.address, state))
