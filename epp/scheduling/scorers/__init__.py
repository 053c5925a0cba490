"""Scorers, one per module; each states what it rewards. Shared arithmetic lives here."""

from __future__ import annotations

from collections.abc import Sequence


def lower_is_better(values: Sequence[float]) -> list[float]:
    """Min-max normalised and inverted: the smallest value scores 1, the largest 0; all equal → all 1."""
    low = min(values)
    span = max(values) - low
    if span <= 0:
        return [1.0] * len(values)
    return [(low + span - value) / span for value in values]
