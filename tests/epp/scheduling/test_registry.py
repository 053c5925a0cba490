"""Profiles from the ``epp.scheduling`` config: built-ins, custom ones, and errors that name the key."""

from __future__ import annotations

from typing import Any

import pytest

from epp.scheduling.filters.headroom import HeadroomFilter
from epp.scheduling.pickers.max_score import MaxScorePicker
from epp.scheduling.pickers.round_robin import RoundRobinPicker
from epp.scheduling.prefix_view import PrefixRecorder, PrefixSettings
from epp.scheduling.registry import DEFAULT_PROFILE, PROFILES, build_profile
from epp.scheduling.scorers.prefix_cache import PrefixCacheScorer
from epp.scheduling.scorers.queue_depth import QueueDepthScorer
from epp.scheduling.scorers.ttft_cost import TtftCostScorer
from tokenlabs.errors import ConfigError


def scorer_names(config: dict[str, Any]) -> list[tuple[str, float]]:
    return [(weighted.name, weighted.weight) for weighted in build_profile(config).scorers]


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_built_in_profile_builds(name: str) -> None:
    profile = build_profile({"profile": name})
    assert profile.name == name
    assert profile.picker[0] == PROFILES[name]["picker"]["type"]


def test_built_in_profiles_as_documented() -> None:
    assert scorer_names({"profile": "gie_default"}) == [("queue_depth", 2.0), ("kv_cache", 2.0), ("prefix_cache", 3.0)]
    assert scorer_names({"profile": "tokenlabs"}) == [("ttft_cost", 1.0)]
    assert scorer_names({"profile": "least_request"}) == [("active_requests", 1.0)]
    round_robin = build_profile({"profile": "round_robin"})
    assert round_robin.scorers == () and isinstance(round_robin.picker[1], RoundRobinPicker)


def test_an_empty_config_is_the_default_profile() -> None:
    assert DEFAULT_PROFILE == "tokenlabs"
    for config in ({}, {"prefix": {"block_chars": 32}}):
        profile = build_profile(config)
        assert profile.name == "tokenlabs"
        assert [weighted.name for weighted in profile.scorers] == ["ttft_cost"]


def test_a_custom_profile() -> None:
    profile = build_profile(
        {
            "filters": [{"type": "headroom", "queue_depth": 3, "kv_cache_usage": 0.9}],
            "scorers": [{"type": "queue_depth", "weight": 0.5, "count_pending": True}, {"type": "kv_cache"}],
            "picker": {"type": "max_score"},
        }
    )
    assert profile.name == "custom"
    ((filter_name, headroom),) = profile.filters
    assert (filter_name, headroom) == ("headroom", HeadroomFilter(queue_depth=3, kv_cache_usage=0.9))
    assert [(weighted.name, weighted.weight) for weighted in profile.scorers] == [
        ("queue_depth", 0.5),
        ("kv_cache", 1.0),
    ]
    assert profile.scorers[0].scorer == QueueDepthScorer(count_pending=True)
    assert isinstance(profile.picker[1], MaxScorePicker)
    assert profile.observers == ()  # nothing uses the prefix index


def test_a_custom_profile_without_picker_uses_max_score() -> None:
    profile = build_profile({"scorers": [{"type": "kv_cache"}]})
    assert profile.picker[0] == "max_score"


def test_prefix_settings_reach_the_plugins() -> None:
    profile = build_profile(
        {"profile": "gie_default", "prefix": {"block_chars": 16, "max_blocks": 8, "default_capacity_blocks": 99}}
    )
    (prefix,) = [weighted.scorer for weighted in profile.scorers if weighted.name == "prefix_cache"]
    assert isinstance(prefix, PrefixCacheScorer)
    assert prefix.settings == PrefixSettings(block_chars=16, max_blocks=8, default_capacity_blocks=99)
    assert prefix.index.block_chars == 16
    assert prefix.index.capacity_blocks(None) == 99
    assert build_profile({}).scorers[0].scorer.settings == PrefixSettings()  # type: ignore[attr-defined]


def test_prefix_plugins_share_one_index_and_one_recorder() -> None:
    profile = build_profile(
        {
            "scorers": [
                {"type": "prefix_cache"},
                {"type": "ttft_cost", "running_request_tokens": 8, "prefill_tokens_per_s": 900},
            ]
        }
    )
    prefix, ttft = (weighted.scorer for weighted in profile.scorers)
    assert isinstance(prefix, PrefixCacheScorer) and isinstance(ttft, TtftCostScorer)
    assert prefix.index is ttft.index
    assert (ttft.running_request_tokens, ttft.prefill_tokens_per_s) == (8.0, 900.0)
    recorders = [observer for observer in profile.observers if isinstance(observer, PrefixRecorder)]
    assert len(recorders) == 1  # recording a pick twice would be harmless but wasteful
    assert ttft in profile.observers  # it learns the typical prompt from picks


def test_each_profile_build_has_its_own_index() -> None:
    first, second = build_profile({"profile": "gie_default"}), build_profile({"profile": "gie_default"})
    assert first.scorers[2].scorer.index is not second.scorers[2].scorer.index  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        ({"profile": "fastest"}, "epp.scheduling.profile", "must be one of gie_default, tokenlabs"),
        ({"profile": "tokenlabs", "scorers": []}, "epp.scheduling.scorers", "cannot be combined"),
        ({"profile": "tokenlabs", "picker": {"type": "max_score"}}, "epp.scheduling.picker", "cannot be combined"),
        ({"profile": "tokenlabs", "scoring": 1}, "epp.scheduling.scoring", "not a known setting"),
        ({"scorer": [{"type": "kv_cache"}]}, "epp.scheduling.scorer", "not a known setting"),  # a typo, no default
        ({"scorers": [{"type": "kv_cache"}], "extra": 1}, "epp.scheduling.extra", "not a known setting"),
        ({"scorers": [{"type": "kv_cache"}, {"type": "magic"}]}, "epp.scheduling.scorers[1].type", "must be one of"),
        ({"scorers": [{"weight": 1}]}, "epp.scheduling.scorers[0].type", "is required"),
        ({"scorers": [{"type": "kv_cache", "alpha": 1}]}, "epp.scheduling.scorers[0].alpha", "not a known setting"),
        ({"scorers": [{"type": "kv_cache"}, {"type": "kv_cache"}]}, "epp.scheduling.scorers[1].type", "twice"),
        ({"scorers": [{"type": "kv_cache", "weight": -1}]}, "epp.scheduling.scorers[0].weight", ">= 0"),
        ({"scorers": [{"type": "kv_cache", "weight": "high"}]}, "epp.scheduling.scorers[0].weight", "a number"),
        ({"scorers": [{"type": "kv_cache", "weight": True}]}, "epp.scheduling.scorers[0].weight", "a number"),
        ({"scorers": {"type": "kv_cache"}}, "epp.scheduling.scorers", "must be a list"),
        ({"scorers": ["kv_cache"]}, "epp.scheduling.scorers[0]", "must be a mapping"),
        ({"filters": [{"type": "headroom", "kv_cache_usage": 1.5}]}, "epp.scheduling.filters[0].kv_cache_usage", ""),
        ({"filters": [{"type": "headroom", "queue_depth": 0}]}, "epp.scheduling.filters[0].queue_depth", ">= 1"),
        ({"filters": [{"type": "headroom", "weight": 2}]}, "epp.scheduling.filters[0].weight", "not a known"),
        ({"picker": {"type": "best"}}, "epp.scheduling.picker.type", "must be one of max_score, round_robin"),
        ({"picker": {"type": "max_score", "seed": 1}}, "epp.scheduling.picker.seed", "not a known setting"),
        ({"scorers": [{"type": "queue_depth", "count_pending": "yes"}]}, "epp.scheduling.scorers[0].count_pending", ""),
        ({"prefix": {"block_chars": 0}}, "epp.scheduling.prefix.block_chars", ">= 1"),
        (
            {"scorers": [{"type": "ttft_cost", "prefill_tokens_per_s": 0}]},
            "epp.scheduling.scorers[0].prefill_tokens_per_s",
            ">= 1",
        ),
        ({"profile": "gie_default", "prefix": {"blocks": 1}}, "epp.scheduling.prefix.blocks", "not a known setting"),
        (
            {"scorers": [{"type": "ttft_cost", "kv_cache_penalty": -1}]},
            "epp.scheduling.scorers[0].kv_cache_penalty",
            "",
        ),
    ],
)
def test_bad_configs_name_the_key(config: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_profile(config)
    assert caught.value.key == key
    assert message in str(caught.value)


def test_the_config_path_is_the_callers() -> None:
    with pytest.raises(ConfigError) as caught:
        build_profile({"picker": {"type": "best"}}, path="pools.llama.scheduling")
    assert caught.value.key == "pools.llama.scheduling.picker.type"
