"""Prefix cache: the share of the prompt's blocks each endpoint is believed to hold."""

from __future__ import annotations

from epp.prefix import PrefixIndex, block_hashes
from epp.scheduling.interfaces import CycleState, SchedulingRequest
from epp.scheduling.prefix_view import PrefixSettings, PrefixView
from epp.scheduling.scorers.prefix_cache import PrefixCacheScorer
from tests.epp.fakes import candidate

SETTINGS = PrefixSettings(block_chars=10, max_blocks=100, default_capacity_blocks=1000)
PROMPT = "".join(f"block {index:4d}" for index in range(8))  # 8 blocks of 10 characters


def scorer_with(held: dict[str, int]) -> PrefixCacheScorer:
    index = PrefixIndex(SETTINGS.block_chars, SETTINGS.default_capacity_blocks)
    hashes = block_hashes("m", PROMPT, SETTINGS.block_chars, SETTINGS.max_blocks)
    for address, blocks in held.items():
        index.record(address, hashes[:blocks], 1000)
    return PrefixCacheScorer(index, SETTINGS)


def test_share_of_blocks_held() -> None:
    scorer = scorer_with({"a": 8, "b": 2})
    found = [candidate("a"), candidate("b"), candidate("c")]
    assert scorer.score(SchedulingRequest("m", PROMPT), found, {}) == [1.0, 0.25, 0.0]
    # A longer prompt with the same start: a holds 8 of its 16 blocks.
    assert scorer.score(SchedulingRequest("m", PROMPT * 2), found, {}) == [0.5, 0.125, 0.0]


def test_another_model_or_a_short_prompt_matches_nothing() -> None:
    scorer = scorer_with({"a": 8})
    found = [candidate("a"), candidate("b")]
    assert scorer.score(SchedulingRequest("other-model", PROMPT), found, {}) == [0.0, 0.0]
    assert scorer.score(SchedulingRequest("m", PROMPT[:9]), found, {}) == [0.0, 0.0]  # no full block


def test_the_view_is_computed_once_per_cycle_and_shared() -> None:
    scorer = scorer_with({"a": 4})
    state: CycleState = {}
    found = [candidate("a"), candidate("b")]
    scorer.score(SchedulingRequest("m", PROMPT), found, state)
    (view,) = state.values()
    assert isinstance(view, PrefixView) and view.matched == {"a": 4}
    assert view.cached_fraction("a") == 0.5 and view.cached_fraction("b") == 0.0
    scorer.score(SchedulingRequest("m", PROMPT), found, state)
    assert next(iter(state.values())) is view
