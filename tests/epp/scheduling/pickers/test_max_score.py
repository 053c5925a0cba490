"""Max score: best total first, ties in random order."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from epp.scheduling.interfaces import Candidate
from epp.scheduling.pickers.max_score import MaxScorePicker
from tests.epp.fakes import candidate

FOUR = [candidate(f"e{index}:1") for index in range(4)]


def addresses(ranked: Sequence[Candidate]) -> list[str]:
    return [c.address for c in ranked]


def test_ranks_by_total_up_to_count() -> None:
    picker = MaxScorePicker()
    rng = random.Random(0)
    assert addresses(picker.pick(FOUR, [0.1, 3.0, 2.0, 0.5], 3, rng)) == ["e1:1", "e2:1", "e3:1"]
    assert addresses(picker.pick(FOUR, [0.1, 3.0, 2.0, 0.5], 1, rng)) == ["e1:1"]
    ranked = picker.pick(FOUR, [0.1, 3.0, 2.0, 0.5], 10, rng)
    assert addresses(ranked) == ["e1:1", "e2:1", "e3:1", "e0:1"]  # all of them, each once
    assert all(got is FOUR[int(got.address[1])] for got in ranked)  # the candidates themselves


def test_ties_are_broken_at_random_and_spread() -> None:
    picker = MaxScorePicker()
    rng = random.Random(42)
    firsts = Counter(picker.pick(FOUR, [1.0, 1.0, 1.0, 0.5], 2, rng)[0].address for _ in range(600))
    # Three tied endpoints: each should be first about 200 times; the lower one never.
    assert set(firsts) == {"e0:1", "e1:1", "e2:1"}
    assert all(150 <= count <= 250 for count in firsts.values()), firsts


def test_a_seeded_rng_makes_it_reproducible() -> None:
    def run(seed: int) -> list[str]:
        rng = random.Random(seed)
        return [MaxScorePicker().pick(FOUR, [0.0] * 4, 1, rng)[0].address for _ in range(20)]

    assert run(7) == run(7)


def test_never_empty_for_candidates() -> None:
    assert len(MaxScorePicker().pick(FOUR[:1], [0.0], 3, random.Random(0))) == 1
