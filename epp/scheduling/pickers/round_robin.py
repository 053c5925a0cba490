"""Each pick takes the next endpoint in turn, ignoring scores (the baseline every policy must beat)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from epp.scheduling.interfaces import Candidate


@dataclass
class RoundRobinPicker:
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    def pick(
        self, candidates: Sequence[Candidate], totals: Sequence[float], count: int, rng: random.Random
    ) -> list[Candidate]:
        start = next(self._turn) % len(candidates)
        rotated = [*candidates[start:], *candidates[:start]]
        return rotated[:count]
