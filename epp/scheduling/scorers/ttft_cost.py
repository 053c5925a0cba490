"""Rewards the endpoint expected to reach this request's first token soonest, counted in prompt tokens of work.

    cost = own uncached prompt tokens    (the prefix index says how much of the prompt it holds)
         + prefill work ahead            (the larger of the two estimates below)
         + (running + picked since the scrape) * running_request_tokens   (decode shares every engine step)

Prefill work ahead, estimated two ways because each misses something:

- from the metrics: waiting * typical uncached prompt + uncached tokens picked since the scrape. vLLM counts a
  request as running as soon as its prefill starts, so a long chunked prefill in progress is invisible here;
- from this picker's own picks: a fluid queue per endpoint that grows by each pick's uncached tokens and drains
  at ``prefill_tokens_per_s``. It sees prefill in progress but not other pickers' requests.

The cost is scaled by ``1 + kv_cache_penalty * usage^2`` because a nearly full cache preempts and recomputes.
Scores are the costs min-max normalised and inverted. Unlike separate queue and prefix scores, the cost weighs a
cache hit against the queue in front of it in the same unit, so a hot prefix stops attracting requests once
waiting for it costs more than recomputing it elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from epp.prefix import PrefixIndex
from epp.scheduling.interfaces import Candidate, CycleState, SchedulingRequest
from epp.scheduling.prefix_view import PrefixSettings, prefix_view, uncached_tokens
from epp.scheduling.scorers import lower_is_better

_AVERAGE_WEIGHT = 0.05
# Without a reported cache size: the longest context of common open models.
_MAX_REQUEST_TOKENS = 131_072


@dataclass
class TtftCostScorer:
    index: PrefixIndex
    settings: PrefixSettings
    prefill_tokens_per_s: float = 5000.0
    running_request_tokens: float = 32.0
    kv_cache_penalty: float = 1.0
    recompute_weight: float = 3.0
    initial_prompt_tokens: float = 512.0
    clock: Callable[[], float] = time.monotonic
    _typical: float = field(init=False)
    _backlog: dict[str, tuple[float, float]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._typical = self.initial_prompt_tokens

    def score(self, request: SchedulingRequest, candidates: Sequence[Candidate], state: CycleState) -> Sequence[float]:
        view = prefix_view(self.index, self.settings, request, candidates, state)
        prompt = request.prompt_tokens
        typical = self._typical
        now = self.clock()
        costs = []
        for candidate in candidates:
            metrics = candidate.metrics
            seen_ahead = metrics.waiting * typical + candidate.pending_tokens
            ahead = max(seen_ahead, self._backlog_at(candidate.address, now))
            own = prompt * (1.0 - view.cached_fraction(candidate.address)) * self.recompute_weight
            # Picks since the scrape will be running by the time this request is: they share its steps too.
            cost = own + ahead + (metrics.running + candidate.pending) * self.running_request_tokens
            usage = metrics.kv_cache_usage
            costs.append(cost * (1.0 + self.kv_cache_penalty * usage * usage))
        return lower_is_better(costs)

    def picked(self, request: SchedulingRequest, chosen: Candidate, state: CycleState) -> None:
        # No request computes more than the endpoint's cache holds (a longer one is refused at once), so a huge
        # body must not make an endpoint look busy, or the typical prompt look long, for minutes.
        cache = chosen.metrics.cache
        limit = cache.capacity_tokens if cache is not None else _MAX_REQUEST_TOKENS
        tokens = min(uncached_tokens(request, chosen.address, state), limit)
        self._typical += _AVERAGE_WEIGHT * (tokens - self._typical)
        now = self.clock()
        self._backlog[chosen.address] = (self._backlog_at(chosen.address, now) + tokens, now)

    def forget(self, address: str) -> None:
        self._backlog.pop(address, None)

    def _backlog_at(self, address: str, now: float) -> float:
        entry = self._backlog.get(address)
        if entry is None:
            return 0.0
        tokens, since = entry
        return max(0.0, tokens - (now - since) * self.prefill_tokens_per_s)
