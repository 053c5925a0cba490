"""The normalisation cost-like scorers share: min-max, inverted."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from epp.scheduling.scorers import lower_is_better


def test_smallest_scores_one_largest_zero_linear_between() -> None:
    assert lower_is_better([0, 5, 10]) == [1.0, 0.5, 0.0]
    assert lower_is_better([30, 10, 20]) == [0.0, 1.0, 0.5]
    assert lower_is_better([2.0, 3.0]) == [1.0, 0.0]


@pytest.mark.parametrize("values", [[7], [3, 3, 3], [0.0, 0.0]])
def test_all_equal_all_score_one(values: list[float]) -> None:
    assert lower_is_better(values) == [1.0] * len(values)


@given(st.lists(st.floats(min_value=-1e12, max_value=1e12), min_size=1, max_size=20))
def test_in_unit_range_and_order_reversing(values: list[float]) -> None:
    scores = lower_is_better(values)
    assert all(0.0 <= score <= 1.0 for score in scores)
    for left, right in zip(values, scores, strict=True):
        for other_value, other_score in zip(values, scores, strict=True):
            if left < other_value:
                assert right >= other_score
