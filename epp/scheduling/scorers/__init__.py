"""Scorers, one per module; each states what it rewards. Shared arithmetic lives here."""

from __future__ import annotations

from collections.abc import Sequence


def lower_is_better(values: Sequence[float]) -> list[float]:
    """Min-max normalised and inverted: the smallest value scores 1, the largest 0; all equal → all 1."""
    high = max(values)
    span = high - min(values)
    if span <= 0:
        return [1.0] * len(values)
    # high - value, not low + span - value: the latter can round to just below 0 (or above 1).
    return [(high - value) / span for value in values]
