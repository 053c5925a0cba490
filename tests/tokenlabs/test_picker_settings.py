"""The ``pools:`` and ``epp:`` sections: static and Kubernetes pools, the picker's timings and saturation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tokenlabs.config_reader import Section
from tokenlabs.errors import ConfigError
from tokenlabs.picker_settings import (
    Endpoint,
    EppSettings,
    PodSelector,
    PoolSettings,
    SaturationMode,
    SaturationSettings,
    parse_epp,
    parse_pools,
)
from tokenlabs.settings import Settings, parse

MINIMAL = {
    "tiers": {"free": {"requests_per_minute": 10}},
    "models": {"m": {"pool": "p"}},
    "pools": {"p": {"endpoints": ["127.0.0.1:8000"]}},
}


def settings_with(**changes: Any) -> Settings:
    document = yaml.safe_load(yaml.safe_dump(MINIMAL))
    document.update(changes)
    return parse(document, base_dir=Path("/cfg"))


def pools(config: dict[str, Any]) -> dict[str, PoolSettings]:
    return parse_pools(Section(config, "pools"), default_namespace="tenants-ns")


def epp(config: dict[str, Any]) -> EppSettings:
    return parse_epp(Section(config, "epp"), host="127.0.0.1", grpc_port=9003, metrics_port=9093, drain_seconds=10.0)


# ---- pools ------------------------------------------------------------------------------------------------------


def test_a_static_pool() -> None:
    parsed = pools({"p": {"endpoints": ["10.0.0.1:8000", "[::1]:8001", "worker.local:80"]}})
    assert parsed["p"] == PoolSettings(
        name="p",
        endpoints=(Endpoint("10.0.0.1", 8000), Endpoint("::1", 8001), Endpoint("worker.local", 80)),
        metrics_path="/metrics",
    )
    assert parsed["p"].endpoints[0].address == "10.0.0.1:8000"


def test_a_kubernetes_pool() -> None:
    parsed = pools({"p": {"selector": {"app": "vllm", "model": "llama"}, "target_port": 8000}})["p"]
    assert parsed.endpoints == ()
    assert parsed.pods == PodSelector(
        namespace="tenants-ns", match_labels={"app": "vllm", "model": "llama"}, target_port=8000
    )
    assert parsed.pods.label_selector == "app=vllm,model=llama"
    other = pools({"p": {"selector": {"b": "2", "a": "1"}, "target_port": 1, "namespace": "inference"}})["p"]
    assert other.pods is not None
    assert (other.pods.namespace, other.pods.label_selector) == ("inference", "a=1,b=2")  # sorted, stable


def test_metrics_path() -> None:
    assert pools({"p": {"endpoints": ["h:1"], "metrics_path": "/stats/prometheus"}})["p"].metrics_path == (
        "/stats/prometheus"
    )
    selected = pools({"p": {"selector": {"a": "b"}, "target_port": 1, "metrics_path": "/m"}})["p"]
    assert selected.metrics_path == "/m"


def test_pools_through_the_whole_config() -> None:
    settings = settings_with(pools={"p": {"selector": {"app": "vllm"}, "target_port": 8000}})
    assert settings.pools["p"].pods is not None
    assert settings.pools["p"].pods.namespace == settings.tenants.namespace  # defaults to the tenants' namespace


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        ({"endpoints": ["h:1"], "selector": {"a": "b"}, "target_port": 1}, "pools.p.endpoints", "either"),
        ({"metrics_path": "/metrics"}, "pools.p.endpoints", "set either 'endpoints' or 'selector'"),
        ({"endpoints": []}, "pools.p.endpoints", "at least one"),
        ({"endpoints": "h:1"}, "pools.p.endpoints", "list"),
        ({"endpoints": ["h:1", "h"]}, "pools.p.endpoints[1]", "host:port"),
        ({"endpoints": ["h:0"]}, "pools.p.endpoints[0]", "host:port"),
        ({"endpoints": ["h:65536"]}, "pools.p.endpoints[0]", "host:port"),
        ({"endpoints": [":80"]}, "pools.p.endpoints[0]", "host:port"),
        ({"endpoints": ["h:1"], "metrics_path": "metrics"}, "pools.p.metrics_path", "starting with '/'"),
        ({"endpoints": ["h:1"], "namespace": "x"}, "pools.p.namespace", "not a known setting"),  # static: no pods
        ({"endpoints": ["h:1"], "target_port": 80}, "pools.p.target_port", "not a known setting"),
        ({"selector": {}, "target_port": 1}, "pools.p.selector", "at least one label"),
        ({"selector": {"a": "b"}}, "pools.p.target_port", "is required"),
        ({"selector": {"a": "b"}, "target_port": 0}, "pools.p.target_port", "between 1 and 65535"),
        ({"selector": {"a": "b"}, "target_port": 65536}, "pools.p.target_port", "between 1 and 65535"),
        ({"selector": {"a": 1}, "target_port": 1}, "pools.p.selector.a", "non-empty string"),
        ({"selector": ["a=b"], "target_port": 1}, "pools.p.selector", "must be a mapping"),
        ({"selector": {"a": "b"}, "target_port": 1, "labels": {}}, "pools.p.labels", "not a known setting"),
    ],
)
def test_bad_pools_name_the_key(config: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        pools({"p": config})
    assert caught.value.key == key
    assert message in str(caught.value)


# ---- epp ----------------------------------------------------------------------------------------------------------


def test_epp_defaults() -> None:
    parsed = epp({})
    assert parsed == EppSettings(
        host="127.0.0.1",
        grpc_port=9003,
        metrics_port=9093,
        drain_seconds=10.0,
        scrape_interval_s=0.1,
        scrape_timeout_s=1.0,
        metrics_staleness_s=2.0,
        fallbacks=2,
        saturation=SaturationSettings(),
        scheduling={},
    )
    assert settings_with().epp == parsed  # the whole config's defaults are the same


def test_epp_keys_in_milliseconds_become_seconds() -> None:
    parsed = epp(
        {
            "grpc_port": 19003,
            "scrape_interval_ms": 100,
            "scrape_timeout_ms": 250,
            "metrics_staleness_ms": 100,  # equal to the interval is allowed
            "fallbacks": 0,
            "saturation": {"mode": "shed", "queue_depth": 8, "kv_cache_usage": 0.9, "queue_timeout_ms": 1500},
            "scheduling": {"profile": "gie_default"},
        }
    )
    assert (parsed.grpc_port, parsed.scrape_interval_s, parsed.scrape_timeout_s) == (19003, 0.1, 0.25)
    assert (parsed.metrics_staleness_s, parsed.fallbacks) == (0.1, 0)
    assert parsed.saturation == SaturationSettings(
        mode=SaturationMode.SHED, queue_depth=8, kv_cache_usage=0.9, queue_timeout_s=1.5, max_queued=1000
    )
    assert dict(parsed.scheduling) == {"profile": "gie_default"}  # checked later, by the picker's registry


def test_the_scheduling_section_is_kept_read_only() -> None:
    parsed = epp({"scheduling": {"scorers": [{"type": "kv_cache"}]}})
    with pytest.raises(TypeError):
        parsed.scheduling["profile"] = "x"  # type: ignore[index]


@pytest.mark.parametrize("mode", list(SaturationMode))
def test_saturation_modes(mode: SaturationMode) -> None:
    assert epp({"saturation": {"mode": mode.value}}).saturation.mode is mode


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        ({"scrape_interval_ms": 0}, "epp.scrape_interval_ms", ">= 1.0"),
        ({"scrape_interval_ms": "fast"}, "epp.scrape_interval_ms", "a number"),
        ({"scrape_timeout_ms": 0.5}, "epp.scrape_timeout_ms", ">= 1.0"),
        ({"metrics_staleness_ms": 40}, "epp.metrics_staleness_ms", ">= scrape_interval_ms"),  # default interval 50
        ({"scrape_interval_ms": 500, "metrics_staleness_ms": 499}, "epp.metrics_staleness_ms", ">= scrape_interval"),
        ({"fallbacks": 17}, "epp.fallbacks", "between 0 and 16"),
        ({"fallbacks": -1}, "epp.fallbacks", "between 0 and 16"),
        ({"grpc_port": 0}, "epp.grpc_port", "between 1 and 65535"),
        ({"scheduling": ["tokenlabs"]}, "epp.scheduling", "must be a mapping"),
        ({"scrape_interval": 50}, "epp.scrape_interval", "not a known setting"),
        ({"saturation": {"mode": "drop"}}, "epp.saturation.mode", "must be one of shed, queue, off"),
        ({"saturation": {"queue_depth": 0}}, "epp.saturation.queue_depth", ">= 1"),
        ({"saturation": {"kv_cache_usage": 1.5}}, "epp.saturation.kv_cache_usage", "between 0 and 1"),
        ({"saturation": {"kv_cache_usage": -0.1}}, "epp.saturation.kv_cache_usage", ">= 0"),
        ({"saturation": {"queue_timeout_ms": -1}}, "epp.saturation.queue_timeout_ms", ">= 0"),
        ({"saturation": {"max_queued": -1}}, "epp.saturation.max_queued", ">= 0"),
        ({"saturation": {"timeout_ms": 1}}, "epp.saturation.timeout_ms", "not a known setting"),
        ({"saturation": "queue"}, "epp.saturation", "must be a mapping"),
    ],
)
def test_bad_epp_settings_name_the_key(config: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        epp(config)
    assert caught.value.key == key
    assert message in str(caught.value)
    with pytest.raises(ConfigError) as through_settings:
        settings_with(epp=config)
    assert through_settings.value.key == key
