"""Hybrid drafting: prompt lookup when the context's tail recurs earlier, early exit otherwise.

Lookup drafts cost nothing and, where text is being copied, are accepted far more often than an exit head's; where
lookup has nothing, the early-exit drafter (with its own gate and length cap) gets the step.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.spec.drafters import Draft, Drafter, DraftState
from engine.spec.drafters.lookup import LookupDrafter


class HybridDrafter:
    """Lookup first (up to the step's budget), ``fallback`` (normally an early-exit drafter) when lookup proposes
    nothing. One hybrid serves one sequence at a time, as :class:`LookupDrafter` does."""

    def __init__(self, fallback: Drafter, lookup: LookupDrafter | None = None) -> None:
        self.lookup = lookup or LookupDrafter()
        self.fallback = fallback
        self.lookup_steps = 0
        self.fallback_steps = 0

    def propose(self, context_ids: Sequence[int], state: DraftState) -> Draft:
        draft = self.lookup.propose(context_ids, state)
        if draft.tokens:
            self.lookup_steps += 1
            return draft
        self.fallback_steps += 1
        return self.fallback.propose(context_ids, state)
