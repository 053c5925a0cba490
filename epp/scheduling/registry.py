"""The one place scheduling plugins are registered, and where a profile is built from the ``epp.scheduling`` config.

```yaml
epp:
  scheduling:
    profile: tokenlabs          # a built-in profile (below) ...
    # ... or your own (without `profile`):
    filters: [{type: headroom, queue_depth: 5, kv_cache_usage: 0.8}]
    scorers: [{type: prefix_cache, weight: 3}, {type: queue_depth, weight: 2}, {type: kv_cache, weight: 2}]
    picker: {type: max_score}
    prefix: {block_chars: 64, max_blocks: 256, default_capacity_blocks: 31250}
```

Unknown plugin types, unknown parameters, duplicate scorers and bad values are start-up errors naming the key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from epp.prefix import PrefixIndex
from epp.scheduling.filters.headroom import HeadroomFilter
from epp.scheduling.framework import Profile, WeightedScorer
from epp.scheduling.interfaces import Filter, Picker, PickObserver, Scorer
from epp.scheduling.pickers.max_score import MaxScorePicker
from epp.scheduling.pickers.round_robin import RoundRobinPicker
from epp.scheduling.prefix_view import PrefixRecorder, PrefixSettings
from epp.scheduling.scorers.active_requests import ActiveRequestsScorer
from epp.scheduling.scorers.kv_cache import KvCacheScorer
from epp.scheduling.scorers.prefix_cache import PrefixCacheScorer
from epp.scheduling.scorers.queue_depth import QueueDepthScorer
from epp.scheduling.scorers.ttft_cost import TtftCostScorer
from tokenlabs.config_reader import Section
from tokenlabs.errors import ConfigError

CONFIG_PATH: Final = "epp.scheduling"

# Built-in profiles, written as configs so they are checked exactly like an operator's.
PROFILES: Final[Mapping[str, Mapping[str, Any]]] = {
    # The Gateway API Inference Extension's default: queue 2, kv-cache 2, prefix 3, max-score.
    "gie_default": {
        "scorers": [
            {"type": "queue_depth", "weight": 2},
            {"type": "kv_cache", "weight": 2},
            {"type": "prefix_cache", "weight": 3},
        ],
        "picker": {"type": "max_score"},
    },
    # Prefix hits and queues weighed in one unit (prompt tokens of work), counting the picks the metrics do not
    # show yet; see scorers/ttft_cost.py.
    "tokenlabs": {
        "scorers": [{"type": "ttft_cost", "weight": 1}],
        "picker": {"type": "max_score"},
    },
    "least_request": {"scorers": [{"type": "active_requests", "weight": 1}], "picker": {"type": "max_score"}},
    "round_robin": {"picker": {"type": "round_robin"}},
}
DEFAULT_PROFILE: Final = "tokenlabs"


@dataclass
class _Shared:
    """What several plugins of one profile share: the prefix index, made when the first plugin asks for it."""

    prefix_settings: PrefixSettings
    index: PrefixIndex | None = None
    observers: list[PickObserver] = field(default_factory=list)

    def prefix_index(self) -> PrefixIndex:
        if self.index is None:
            self.index = PrefixIndex(self.prefix_settings.block_chars, self.prefix_settings.default_capacity_blocks)
            self.observers.append(PrefixRecorder(self.index, self.prefix_settings))
        return self.index


def _headroom(params: Section, shared: _Shared) -> Filter:
    usage = params.number("kv_cache_usage", 0.8)
    if usage > 1:
        raise ConfigError(params.path_of("kv_cache_usage"), usage, "must be a fraction between 0 and 1")
    return HeadroomFilter(queue_depth=params.integer("queue_depth", 5, minimum=1), kv_cache_usage=usage)


def _queue_depth(params: Section, shared: _Shared) -> Scorer:
    return QueueDepthScorer(count_pending=params.boolean("count_pending", False))


def _kv_cache(params: Section, shared: _Shared) -> Scorer:
    return KvCacheScorer()


def _prefix_cache(params: Section, shared: _Shared) -> Scorer:
    return PrefixCacheScorer(shared.prefix_index(), shared.prefix_settings)


def _active_requests(params: Section, shared: _Shared) -> Scorer:
    return ActiveRequestsScorer()


def _ttft_cost(params: Section, shared: _Shared) -> Scorer:
    scorer = TtftCostScorer(
        shared.prefix_index(),
        shared.prefix_settings,
        prefill_tokens_per_s=params.number("prefill_tokens_per_s", 5000.0, minimum=1.0),
        running_request_tokens=params.number("running_request_tokens", 32.0),
        kv_cache_penalty=params.number("kv_cache_penalty", 1.0),
        recompute_weight=params.number("recompute_weight", 3.0),
        initial_prompt_tokens=params.number("initial_prompt_tokens", 512.0),
    )
    shared.observers.append(scorer)
    return scorer


def _max_score(params: Section, shared: _Shared) -> Picker:
    return MaxScorePicker()


def _round_robin(params: Section, shared: _Shared) -> Picker:
    return RoundRobinPicker()


FILTERS: Final[Mapping[str, Callable[[Section, _Shared], Filter]]] = {"headroom": _headroom}
SCORERS: Final[Mapping[str, Callable[[Section, _Shared], Scorer]]] = {
    "queue_depth": _queue_depth,
    "kv_cache": _kv_cache,
    "prefix_cache": _prefix_cache,
    "active_requests": _active_requests,
    "ttft_cost": _ttft_cost,
}
PICKERS: Final[Mapping[str, Callable[[Section, _Shared], Picker]]] = {
    "max_score": _max_score,
    "round_robin": _round_robin,
}


def build_profile(config: Mapping[str, Any], path: str = CONFIG_PATH) -> Profile:
    """The profile the config names or describes (the default profile for an empty config)."""
    section = Section(config, path)
    if section.raw("profile", None) is not None:
        name = section.string("profile", choices=tuple(PROFILES))
        for key in ("filters", "scorers", "picker"):
            if section.raw(key, None) is not None:
                raise ConfigError(section.path_of(key), config[key], "cannot be combined with a built-in 'profile'")
        prefix = section.raw("prefix", {})
        section.reject_unknown()
        return _build(name, Section({**PROFILES[name], "prefix": prefix}, path))
    if not any(section.raw(key, None) is not None for key in ("filters", "scorers", "picker")):
        prefix = section.raw("prefix", {})
        section.reject_unknown()  # a typo such as `scorer:` must not silently select the default profile
        return _build(DEFAULT_PROFILE, Section({**PROFILES[DEFAULT_PROFILE], "prefix": prefix}, path))
    return _build("custom", section)


def _build(name: str, section: Section) -> Profile:
    shared = _Shared(_prefix_settings(section.section("prefix")))
    filters = tuple(
        (kind, plugin) for kind, plugin in (_plugin(item, FILTERS, shared) for item in _items(section, "filters"))
    )
    scorers: list[WeightedScorer] = []
    for item in _items(section, "scorers"):
        weight = item.number("weight", 1.0)
        kind, scorer = _plugin(item, SCORERS, shared)
        if any(existing.name == kind for existing in scorers):
            raise ConfigError(item.path_of("type"), kind, "is listed twice")
        scorers.append(WeightedScorer(kind, weight, scorer))
    picker = (
        _plugin(section.section("picker"), PICKERS, shared)
        if section.raw("picker", None)
        else ("max_score", MaxScorePicker())
    )
    section.reject_unknown()
    return Profile(name, filters, tuple(scorers), picker, tuple(shared.observers))


def _items(section: Section, key: str) -> list[Section]:
    raw = section.raw(key, [])
    if not isinstance(raw, list):
        raise ConfigError(section.path_of(key), raw, "must be a list of plugins ({type: ..., ...})")
    return [Section(item, f"{section.path_of(key)}[{index}]") for index, item in enumerate(raw)]


def _plugin(
    item: Section, registry: Mapping[str, Callable[[Section, _Shared], Any]], shared: _Shared
) -> tuple[str, Any]:
    kind = item.string("type", choices=tuple(registry))
    plugin = registry[kind](item, shared)
    item.reject_unknown()
    return kind, plugin


def _prefix_settings(section: Section) -> PrefixSettings:
    settings = PrefixSettings(
        block_chars=section.integer("block_chars", 64, minimum=1),
        max_blocks=section.integer("max_blocks", 256, minimum=1),
        default_capacity_blocks=section.integer("default_capacity_blocks", 31250, minimum=1),
    )
    section.reject_unknown()
    return settings
