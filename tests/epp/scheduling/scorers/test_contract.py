"""Every registered scorer keeps the Scorer contract on arbitrary candidates: one value each, in [0, 1], equal
values for candidates it cannot tell apart."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from epp.metrics.snapshot import EndpointMetrics
from epp.scheduling.interfaces import Candidate, SchedulingRequest
from epp.scheduling.registry import SCORERS, build_profile

metrics = st.builds(
    EndpointMetrics,
    scraped_at=st.just(0.0),
    waiting=st.integers(0, 1000),
    running=st.integers(0, 1000),
    kv_cache_usage=st.floats(0.0, 1.0),
)
endpoints = st.lists(st.tuples(metrics, st.integers(0, 50), st.integers(0, 100_000)), min_size=1, max_size=8)


@pytest.mark.parametrize("kind", sorted(SCORERS))
@settings(max_examples=40, deadline=None)
@given(found=endpoints, prompt=st.text(max_size=600), picks=st.lists(st.integers(0, 7), max_size=6))
def test_scorer_contract(
    kind: str, found: list[tuple[EndpointMetrics, int, int]], prompt: str, picks: list[int]
) -> None:
    profile = build_profile({"scorers": [{"type": kind}], "prefix": {"block_chars": 8}})
    ((scorer,),) = [(weighted.scorer,) for weighted in profile.scorers]
    candidates = [
        Candidate(f"e{index}:1", endpoint, pending, tokens) for index, (endpoint, pending, tokens) in enumerate(found)
    ]
    request = SchedulingRequest("m", prompt)
    for pick in picks:  # let the observers (prefix index, typical prompt) learn a few picks first
        chosen = candidates[pick % len(candidates)]
        state: dict[str, object] = {}
        scorer.score(request, candidates, state)
        for observer in profile.observers:
            observer.picked(request, chosen, state)
    values = scorer.score(request, candidates, {})
    assert len(values) == len(candidates)
    assert all(0.0 <= value <= 1.0 for value in values)
    twins = [Candidate(f"twin{index}:1", found[0][0], found[0][1], found[0][2]) for index in range(3)]
    assert len(set(scorer.score(request, twins, {}))) == 1
