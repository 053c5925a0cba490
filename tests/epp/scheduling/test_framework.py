"""One scheduling cycle, with stand-in plugins: the framework's side of every plugin contract."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from epp.metrics.snapshot import EndpointMetrics
from epp.pending import PendingPicks
from epp.prefix import PrefixIndex, block_hashes
from epp.scheduling.framework import Decision, Profile, Scheduler, WeightedScorer, candidates
from epp.scheduling.interfaces import Candidate, CycleState, Filter, PickObserver, SchedulingRequest, Scorer
from epp.scheduling.pickers.max_score import MaxScorePicker
from epp.scheduling.prefix_view import PrefixSettings
from epp.scheduling.scorers.prefix_cache import PrefixCacheScorer
from tests.epp.fakes import candidate, endpoint_metrics
from tests.helpers import metric_samples
from tokenlabs.errors import Unavailable
from tokenlabs.telemetry import Telemetry

REQUEST = SchedulingRequest("m", "x" * 400)  # 101 prompt tokens by the 4-characters estimate


@dataclass
class KeepFilter:
    keep: Callable[[Candidate], bool]
    seen: list[tuple[str, ...]] = field(default_factory=list)

    def filter(
        self, request: SchedulingRequest, candidates: Sequence[Candidate], state: CycleState
    ) -> Sequence[Candidate]:
        self.seen.append(tuple(c.address for c in candidates))
        earlier = state.get("filters")
        state["filters"] = [*(earlier if isinstance(earlier, list) else []), self]
        return [c for c in candidates if self.keep(c)]


@dataclass
class FixedScorer:
    values: Sequence[float]

    def score(self, request: SchedulingRequest, candidates: Sequence[Candidate], state: CycleState) -> Sequence[float]:
        return self.values


@dataclass
class RecordingPicker:
    """Ranks by total like max-score but without randomness, and remembers what it was given."""

    answer_empty: bool = False
    totals: list[float] = field(default_factory=list)
    count: int = 0

    def pick(
        self, candidates: Sequence[Candidate], totals: Sequence[float], count: int, rng: random.Random
    ) -> list[Candidate]:
        self.totals, self.count = list(totals), count
        if self.answer_empty:
            return []
        order = sorted(range(len(candidates)), key=lambda index: -totals[index])
        return [candidates[index] for index in order[:count]]


@dataclass
class RecordingObserver:
    picks: list[tuple[SchedulingRequest, str, CycleState]] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)

    def picked(self, request: SchedulingRequest, chosen: Candidate, state: CycleState) -> None:
        self.picks.append((request, chosen.address, state))

    def forget(self, address: str) -> None:
        self.forgotten.append(address)


def scheduler(
    filters: Sequence[tuple[str, Filter]] = (),
    scorers: Sequence[tuple[str, float, Scorer]] = (),
    picker: RecordingPicker | None = None,
    observers: Sequence[PickObserver] = (),
    fallbacks: int = 2,
    telemetry: Telemetry | None = None,
) -> Scheduler:
    profile = Profile(
        "test",
        tuple(filters),
        tuple(WeightedScorer(name, weight, plugin) for name, weight, plugin in scorers),
        ("recording", picker or RecordingPicker()),
        tuple(observers),
    )
    timing = (
        telemetry.histogram("plugin_seconds", "test", ("extension_point", "plugin"), (0.001,)) if telemetry else None
    )
    return Scheduler(profile, fallbacks, random.Random(0), timing)


FOUR = [candidate(f"e{index}:1") for index in range(4)]


# ---- candidates() ---------------------------------------------------------------------------------------------


def test_candidates_have_fresh_metrics_in_endpoint_order() -> None:
    board = {
        "fresh:1": endpoint_metrics(scraped_at=99.0),
        "edge:1": endpoint_metrics(scraped_at=98.0),  # exactly staleness_s old: still fresh
        "stale:1": endpoint_metrics(scraped_at=97.9),
    }
    found = candidates(["stale:1", "edge:1", "unscraped:1", "fresh:1"], board, PendingPicks(2.0), 100.0, 2.0)
    assert [c.address for c in found] == ["edge:1", "fresh:1"]
    assert found[1].metrics is board["fresh:1"]


def test_candidates_follow_the_subset_hint() -> None:
    board = {address: endpoint_metrics(scraped_at=100.0) for address in ("a:1", "b:1", "c:1")}
    pending = PendingPicks(2.0)
    found = candidates(["a:1", "b:1", "c:1"], board, pending, 100.0, 2.0, subset_hint={"c:1", "a:1", "x:1"})
    assert [c.address for c in found] == ["a:1", "c:1"]
    assert candidates(["a:1"], board, pending, 100.0, 2.0, subset_hint=set()) == []
    assert len(candidates(["a:1", "b:1"], board, pending, 100.0, 2.0, subset_hint=None)) == 2


def test_candidates_count_only_picks_made_after_their_scrape() -> None:
    pending = PendingPicks(5.0)
    pending.record("a:1", 9.0, 100)  # before the scrape was sent: already in the metrics
    pending.record("a:1", 10.0, 20)  # at the instant it was sent: may not be
    pending.record("a:1", 10.5, 3)
    board = {"a:1": endpoint_metrics(scraped_at=10.0)}
    (found,) = candidates(["a:1"], board, pending, 11.0, 2.0)
    assert (found.pending, found.pending_tokens) == (2, 23)


# ---- Scheduler.schedule -----------------------------------------------------------------------------------------


def test_no_candidate_is_unavailable() -> None:
    with pytest.raises(Unavailable) as caught:
        scheduler().schedule(REQUEST, [])
    assert caught.value.code == "no_healthy_endpoint"


def test_filters_run_in_order_on_what_the_previous_one_kept() -> None:
    first = KeepFilter(lambda c: c.address != "e0:1")
    second = KeepFilter(lambda c: c.address != "e3:1")
    decision = scheduler(filters=[("first", first), ("second", second)]).schedule(REQUEST, FOUR)
    assert first.seen == [("e0:1", "e1:1", "e2:1", "e3:1")]
    assert second.seen == [("e1:1", "e2:1", "e3:1")]
    assert set(decision.addresses) == {"e1:1", "e2:1"}


def test_a_filter_keeping_nothing_is_unavailable_naming_it() -> None:
    never = KeepFilter(lambda c: False)
    after = KeepFilter(lambda c: True)
    with pytest.raises(Unavailable) as caught:
        scheduler(filters=[("never", never), ("after", after)]).schedule(REQUEST, FOUR)
    assert caught.value.code == "no_endpoint_fits"
    assert "'never'" in caught.value.message
    assert after.seen == []  # the cycle stops there: no fallback to the filtered-out endpoints


def test_scores_are_clamped_and_weighted() -> None:
    picker = RecordingPicker()
    scorers = [
        # NaN counts as 0, above 1 as 1, below 0 as 0.
        ("wild", 2.0, FixedScorer([math.nan, 1.5, -1.0, 0.5])),
        ("tame", 0.5, FixedScorer([1.0, 0.0, 0.25, math.inf])),
    ]
    decision = scheduler(scorers=scorers, picker=picker).schedule(REQUEST, FOUR)
    # e0: 2*0 + 0.5*1 = 0.5; e1: 2*1 + 0 = 2; e2: 0 + 0.5*0.25 = 0.125; e3: 2*0.5 + 0.5*1 = 1.5
    assert picker.totals == [0.5, 2.0, 0.125, 1.5]
    assert decision.addresses == ("e1:1", "e3:1", "e0:1")


def test_no_scorer_means_equal_totals() -> None:
    picker = RecordingPicker()
    scheduler(picker=picker).schedule(REQUEST, FOUR)
    assert picker.totals == [0.0] * 4


def test_a_scorer_returning_the_wrong_count_is_a_bug() -> None:
    with pytest.raises(RuntimeError, match="'short' returned 3 scores for 4 candidates"):
        scheduler(scorers=[("short", 1.0, FixedScorer([1.0, 1.0, 1.0]))]).schedule(REQUEST, FOUR)


@pytest.mark.parametrize(("fallbacks", "ranked"), [(0, 1), (2, 3), (5, 4)])
def test_the_picker_ranks_the_pick_and_fallbacks(fallbacks: int, ranked: int) -> None:
    picker = RecordingPicker()
    decision = scheduler(picker=picker, fallbacks=fallbacks).schedule(REQUEST, FOUR)
    assert picker.count == fallbacks + 1
    assert len(decision.ranked) == ranked
    assert decision.chosen is decision.ranked[0]
    assert decision.addresses == tuple(c.address for c in decision.ranked)


def test_a_picker_picking_nothing_is_a_bug() -> None:
    with pytest.raises(RuntimeError, match="picked nothing"):
        scheduler(picker=RecordingPicker(answer_empty=True)).schedule(REQUEST, FOUR)


def test_observers_learn_the_pick_with_the_cycles_state() -> None:
    observer, other = RecordingObserver(), RecordingObserver()
    keep = KeepFilter(lambda c: True)
    decision = scheduler(
        filters=[("keep", keep)], scorers=[("s", 1.0, FixedScorer([0, 0, 1, 0]))], observers=[observer, other]
    ).schedule(REQUEST, FOUR)
    assert decision.chosen.address == "e2:1"
    ((request, chosen, state),) = observer.picks
    assert (request, chosen) == (REQUEST, "e2:1")
    assert state["filters"] == [keep]  # the same scratch space the filter wrote
    assert other.picks == observer.picks


def test_a_failed_cycle_tells_no_observer() -> None:
    observer = RecordingObserver()
    with pytest.raises(Unavailable):
        scheduler(filters=[("never", KeepFilter(lambda c: False))], observers=[observer]).schedule(REQUEST, FOUR)
    assert observer.picks == []


def test_uncached_tokens_without_prefix_information_is_the_whole_prompt() -> None:
    assert scheduler().schedule(REQUEST, FOUR).uncached_tokens == REQUEST.prompt_tokens == 101


def test_uncached_tokens_follow_the_prefix_view_of_the_pick() -> None:
    settings = PrefixSettings(block_chars=40, max_blocks=100)
    index = PrefixIndex(settings.block_chars, 1000)
    hashes = block_hashes(REQUEST.model, REQUEST.prompt, 40, 100)  # 400 characters: 10 blocks
    index.record("e1:1", hashes[:5], 1000)
    decision = scheduler(scorers=[("prefix", 1.0, PrefixCacheScorer(index, settings))]).schedule(REQUEST, FOUR)
    assert decision.chosen.address == "e1:1"
    # Half the blocks held: round(101 * 0.5) = 50 tokens (Python rounds 50.5 to even).
    assert decision.uncached_tokens == 50


def test_every_plugin_call_is_timed() -> None:
    telemetry = Telemetry.create("epp-test")
    scheduler(
        filters=[("keep", KeepFilter(lambda c: True))],
        scorers=[("s", 1.0, FixedScorer([0.0] * 4))],
        telemetry=telemetry,
    ).schedule(REQUEST, FOUR)
    counts = {
        dict(labels)["extension_point"] + "/" + dict(labels)["plugin"]: value
        for (name, labels), value in metric_samples(telemetry.render().decode()).items()
        if name == "plugin_seconds_count"
    }
    assert counts == {"filter/keep": 1.0, "scorer/s": 1.0, "picker/recording": 1.0}


def test_decision_of_a_single_candidate() -> None:
    only = Candidate("a:1", EndpointMetrics(scraped_at=0.0))
    decision = Scheduler(Profile("p", (), (), ("max_score", MaxScorePicker())), 2, random.Random(0)).schedule(
        REQUEST, [only]
    )
    assert decision == Decision((only,), REQUEST.prompt_tokens)


def test_forget_reaches_every_observer() -> None:
    observer = RecordingObserver()
    scheduler(observers=[observer]).forget("10.0.0.1:8000")
    assert observer.forgotten == ["10.0.0.1:8000"]
