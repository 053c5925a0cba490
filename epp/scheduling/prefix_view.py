"""The prefix-cache view of one cycle, computed once and shared by every plugin that needs it.

The shared ``PrefixIndex`` is owned by the profile (``registry.py`` builds one per profile when a plugin asks for
it); ``PrefixRecorder`` is the observer that records each pick in it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from epp.prefix import PrefixIndex, block_hashes
from epp.scheduling.interfaces import Candidate, CycleState, SchedulingRequest

_KEY = "prefix.view"


@dataclass(frozen=True, slots=True)
class PrefixView:
    hashes: tuple[int, ...]
    matched: Mapping[str, int]

    def cached_fraction(self, address: str) -> float:
        """Share of the prompt's full blocks the endpoint is believed to hold (0 when the prompt has none)."""
        if not self.hashes:
            return 0.0
        return self.matched.get(address, 0) / len(self.hashes)


@dataclass(frozen=True)
class PrefixSettings:
    block_chars: int = 64
    max_blocks: int = 256
    default_capacity_blocks: int = 31250


def prefix_view(
    index: PrefixIndex,
    settings: PrefixSettings,
    request: SchedulingRequest,
    candidates: Sequence[Candidate],
    state: CycleState,
) -> PrefixView:
    view = state.get(_KEY)
    if isinstance(view, PrefixView):
        return view
    hashes = block_hashes(request.model, request.prompt, settings.block_chars, settings.max_blocks)
    addresses = [candidate.address for candidate in candidates]
    view = PrefixView(hashes, index.matched_blocks(hashes, addresses))
    state[_KEY] = view
    return view


def uncached_tokens(request: SchedulingRequest, address: str, state: CycleState) -> int:
    """The prompt tokens the endpoint would have to compute (all of them when no prefix view was made)."""
    view = state.get(_KEY)
    if not isinstance(view, PrefixView):
        return request.prompt_tokens
    return max(1, round(request.prompt_tokens * (1.0 - view.cached_fraction(address))))


class PrefixRecorder:
    """Records the prompt's blocks on the chosen endpoint, sized by the endpoint's KV cache."""

    def __init__(self, index: PrefixIndex, settings: PrefixSettings) -> None:
        self._index = index
        self._settings = settings

    def forget(self, address: str) -> None:
        self._index.forget(address)

    def picked(self, request: SchedulingRequest, chosen: Candidate, state: CycleState) -> None:
        view = prefix_view(self._index, self._settings, request, (chosen,), state)
        cache = chosen.metrics.cache
        capacity = self._index.capacity_blocks(cache.capacity_tokens if cache else None)
        self._index.record(chosen.address, view.hashes, capacity)
