"""Highest total score first; equal totals in random order (GIE's max-score picker)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from epp.scheduling.interfaces import Candidate


@dataclass(frozen=True)
class MaxScorePicker:
    def pick(
        self, candidates: Sequence[Candidate], totals: Sequence[float], count: int, rng: random.Random
    ) -> list[Candidate]:
        # A random secondary key breaks ties without shuffling a copy of the list.
        order = sorted(range(len(candidates)), key=lambda index: (-totals[index], rng.random()))
        return [candidates[index] for index in order[:count]]
