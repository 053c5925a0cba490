"""Pearson chi-square checks for the seeded distribution tests of speculative sampling."""

import math
from collections import Counter

import torch

# Upper 1e-5 tail of the chi-square distribution, by the Wilson-Hilferty approximation (within 1% here). The tests
# are seeded, so the level only says how surprising a pass-to-fail flip after a harmless change would be.
_Z = 4.265


def chi2_critical(df: int) -> float:
    return df * (1 - 2 / (9 * df) + _Z * math.sqrt(2 / (9 * df))) ** 3


def chi2_statistic(counts: Counter[int], expected: torch.Tensor, n: int) -> tuple[float, int]:
    """Pearson's statistic and degrees of freedom; a token the target gives probability 0 must never appear."""
    support = [token for token in range(len(expected)) if expected[token] > 0]
    assert set(counts) <= set(support), f"sampled tokens outside the target's support: {set(counts) - set(support)}"
    statistic = sum((counts[t] - n * float(expected[t])) ** 2 / (n * float(expected[t])) for t in support)
    return statistic, len(support) - 1


def assert_distributed_as(counts: Counter[int], expected: torch.Tensor, n: int) -> None:
    statistic, df = chi2_statistic(counts, expected, n)
    assert statistic < chi2_critical(df), f"chi2 {statistic:.1f} over df {df}: {sorted(counts.items())} vs {expected}"


def detectable(wrong: torch.Tensor, expected: torch.Tensor, n: int) -> bool:
    """Whether n samples from ``wrong`` would fail ``assert_distributed_as``: the expected statistic (noncentrality
    plus df) clears the critical value three times over."""
    support = expected > 0
    noncentrality = n * float(((wrong - expected)[support] ** 2 / expected[support]).sum())
    df = int(support.sum()) - 1
    return noncentrality + df > 3 * chi2_critical(df)
