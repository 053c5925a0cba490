"""Round robin: each pick starts one further along, scores ignored."""

from __future__ import annotations

import random

from epp.scheduling.pickers.round_robin import RoundRobinPicker
from tests.epp.fakes import candidate

THREE = [candidate(f"e{index}:1") for index in range(3)]


def test_rotates_and_fallbacks_follow_the_rotation() -> None:
    picker = RoundRobinPicker()
    rng = random.Random(0)
    totals = [0.0, 9.0, 0.0]  # ignored
    ranked = [[c.address for c in picker.pick(THREE, totals, 2, rng)] for _ in range(4)]
    assert ranked == [["e0:1", "e1:1"], ["e1:1", "e2:1"], ["e2:1", "e0:1"], ["e0:1", "e1:1"]]


def test_a_changing_candidate_list_still_gets_a_pick() -> None:
    picker = RoundRobinPicker()
    rng = random.Random(0)
    firsts = [picker.pick(THREE[: 1 + turn % 3], [0.0] * (1 + turn % 3), 1, rng)[0].address for turn in range(6)]
    # turn 0: 1 candidate, start 0; turn 1: 2, start 1; turn 2: 3, start 2; turn 3: 1, start 0; turn 4: 2, start 0 ...
    assert firsts == ["e0:1", "e1:1", "e2:1", "e0:1", "e0:1", "e2:1"]


def test_each_picker_has_its_own_turn() -> None:
    rng = random.Random(0)
    first, second = RoundRobinPicker(), RoundRobinPicker()
    first.pick(THREE, [0.0] * 3, 1, rng)
    assert second.pick(THREE, [0.0] * 3, 1, rng)[0].address == "e0:1"
