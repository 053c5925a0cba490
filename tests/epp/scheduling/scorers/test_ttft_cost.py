"""TTFT cost: a prefix hit and the work queued in front of it weighed in one unit, prompt tokens."""

from __future__ import annotations

import pytest

from epp.prefix import PrefixIndex, block_hashes
from epp.scheduling.interfaces import Candidate, SchedulingRequest
from epp.scheduling.prefix_view import PrefixSettings
from epp.scheduling.scorers.ttft_cost import TtftCostScorer
from tests.epp.fakes import FakeClock, candidate

SETTINGS = PrefixSettings(block_chars=64, max_blocks=256, default_capacity_blocks=10_000)
PROMPT = "".join(f"{index:08d}" for index in range(500))  # 4000 characters: 1001 tokens, 62 full blocks
REQUEST = SchedulingRequest("m", PROMPT)


def hot_scorer(clock: FakeClock | None = None, **options: float) -> TtftCostScorer:
    """A fresh scorer (typical uncached prompt 512 tokens, no backlog) whose index says ``hot`` holds the whole
    prompt; its clock moves only when the test says so. Recomputing weighs 1 unless the test sets it, so the
    arithmetic below is in plain tokens."""
    index = PrefixIndex(SETTINGS.block_chars, SETTINGS.default_capacity_blocks)
    index.record("hot", block_hashes("m", PROMPT, SETTINGS.block_chars, SETTINGS.max_blocks), 10_000)
    return TtftCostScorer(index, SETTINGS, clock=clock or FakeClock(), **{"recompute_weight": 1.0, **options})


def scores(scorer: TtftCostScorer, *found: Candidate, request: SchedulingRequest = REQUEST) -> list[float]:
    return list(scorer.score(request, found, {}))


def test_prompt_estimate_behind_the_numbers() -> None:
    assert REQUEST.prompt_tokens == 1001
    assert len(block_hashes("m", PROMPT, 64, 256)) == 62


def test_a_cache_hit_wins_while_its_queue_costs_less_than_recomputing() -> None:
    # hot: 0 own tokens + 1 waiting * 512 typical = 512; cold: 1001 own tokens.
    assert scores(hot_scorer(), candidate("hot", waiting=1), candidate("cold")) == [1.0, 0.0]


def test_a_queue_costing_more_than_recomputing_sends_the_request_elsewhere() -> None:
    # hot: 2 waiting * 512 = 1024 > cold: 1001.
    assert scores(hot_scorer(), candidate("hot", waiting=2), candidate("cold")) == [0.0, 1.0]


@pytest.mark.parametrize(
    ("hot", "hot_wins"),
    [
        (candidate("hot", waiting=1, pending_tokens=400), True),  # 512 + 400 = 912 < 1001
        (candidate("hot", waiting=1, pending_tokens=600), False),  # 512 + 600 = 1112: picks since the scrape count
        (candidate("hot", running=31), True),  # 31 * 32 = 992 < 1001
        (candidate("hot", running=32), False),  # 32 * 32 = 1024
        (candidate("hot", waiting=1, kv_cache_usage=0.5), True),  # 512 * (1 + 0.25) = 640
        (candidate("hot", waiting=1, kv_cache_usage=1.0), False),  # 512 * (1 + 1) = 1024: a full cache preempts
    ],
)
def test_every_term_of_the_cost(hot: Candidate, hot_wins: bool) -> None:
    assert scores(hot_scorer(), hot, candidate("cold")) == ([1.0, 0.0] if hot_wins else [0.0, 1.0])


def test_costs_are_normalised_between_the_cheapest_and_the_dearest() -> None:
    # costs: hot 0, cold 1001, cold and queued 1001 + 512 = 1513
    found = scores(hot_scorer(), candidate("hot"), candidate("cold"), candidate("queued", waiting=1))
    assert found == pytest.approx([1.0, (1513 - 1001) / 1513, 0.0])


def test_recomputing_weighs_more_than_its_own_prefill_by_default() -> None:
    # Two queued requests ahead of the hit cost 1024 tokens; recomputing 1001 tokens weighs 3 * 1001 by default.
    scorer = TtftCostScorer(hot_scorer().index, SETTINGS, clock=FakeClock())
    assert scores(scorer, candidate("hot", waiting=2), candidate("cold")) == [1.0, 0.0]


def test_parameters_change_the_balance() -> None:
    # Running requests weigh 10 tokens each instead of 32: 32 running = 320 < 1001.
    assert scores(hot_scorer(running_request_tokens=10), candidate("hot", running=32), candidate("cold")) == [1, 0]
    # No KV cache penalty: usage does not matter.
    hot = candidate("hot", waiting=1, kv_cache_usage=1.0)
    assert scores(hot_scorer(kv_cache_penalty=0.0), hot, candidate("cold")) == [1.0, 0.0]
    # A larger typical prompt makes one queued request cost more than recomputing.
    assert scores(hot_scorer(initial_prompt_tokens=2000), candidate("hot", waiting=1), candidate("cold")) == [0, 1]


def test_the_typical_prompt_learns_from_picks() -> None:
    clock = FakeClock()
    scorer = hot_scorer(clock)
    queued_hot = candidate("hot", waiting=2)
    assert scores(scorer, queued_hot, candidate("cold")) == [0.0, 1.0]  # 2 * 512 > 1001
    # Sixty picks of one-token prompts: the average (weight 0.05) falls to about 512 * 0.95^60 + 1 ≈ 24.5 tokens,
    # so two queued requests now cost about 49 tokens, far less than recomputing 1001.
    short = SchedulingRequest("m", "")
    for _ in range(60):
        scorer.picked(short, candidate("elsewhere"), {})
    assert scores(scorer, queued_hot, candidate("cold")) == [1.0, 0.0]


def test_own_picks_form_a_backlog_that_drains_at_the_prefill_rate() -> None:
    clock = FakeClock()
    scorer = hot_scorer(clock, prefill_tokens_per_s=5000.0)
    short = SchedulingRequest("m", "x" * 3996)  # 1000 tokens, nothing cached anywhere
    scorer.picked(short, candidate("a"), {})  # no prefix view: all 1000 tokens are uncached
    # The metrics show nothing yet (no waiting, no pending): the backlog alone makes a cost 1000 + 1000 vs 1000.
    assert scores(scorer, candidate("a"), candidate("b"), request=short) == [0.0, 1.0]
    clock.advance(0.1)  # 500 tokens drained: 1500 vs 1000, still behind
    assert scores(scorer, candidate("a"), candidate("b"), request=short) == [0.0, 1.0]
    clock.advance(0.1)  # drained: equal again
    assert scores(scorer, candidate("a"), candidate("b"), request=short) == [1.0, 1.0]
    # Picks add up: two picks 0.1 s apart leave 1000 - 500 + 1000 = 1500 tokens ahead on a.
    scorer.picked(short, candidate("a"), {})
    clock.advance(0.1)
    scorer.picked(short, candidate("a"), {})
    # Three 1000-token picks moved the typical prompt 512 -> 536.4 -> 559.6 -> 581.6 tokens, so 2 waiting read
    # 1163 tokens ahead (less than a's 1500) and 3 waiting 1745 (more).
    assert scores(scorer, candidate("a"), candidate("b", waiting=2), request=short) == [0.0, 1.0]
    assert scores(scorer, candidate("a"), candidate("b", waiting=3), request=short) == [1.0, 0.0]


def test_work_ahead_is_the_larger_of_the_two_estimates_not_their_sum() -> None:
    clock = FakeClock()
    scorer = hot_scorer(clock, initial_prompt_tokens=500.0)
    scorer.picked(SchedulingRequest("m", "x" * 1196), candidate("a"), {})  # a backlog of 300 tokens on a
    # typical is now 500 + 0.05 * (300 - 500) = 490. a: max(490 seen, 300 backlog) = 490; b: 490 seen. Equal.
    assert scores(scorer, candidate("a", waiting=1), candidate("b", waiting=1), request=SchedulingRequest("m")) == [
        1.0,
        1.0,
    ]


def test_a_huge_prompt_counts_no_more_than_the_endpoint_can_hold() -> None:
    clock = FakeClock()
    scorer = hot_scorer(clock, prefill_tokens_per_s=5000.0)
    huge = SchedulingRequest("m", "x" * 4_000_000)  # a million tokens: the worker refuses it at once
    scorer.picked(huge, candidate("a"), {})  # no cache size reported: at most 131,072 tokens of backlog
    clock.advance(131_072 / 5000.0)
    assert scores(scorer, candidate("a"), candidate("b"), request=SchedulingRequest("m")) == [1.0, 1.0]
