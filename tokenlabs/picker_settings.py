"""Settings of the inference pools and of the endpoint picker (``pools:`` and ``epp:`` in the config file).

A pool is either a static list of ``host:port`` endpoints or the ready Kubernetes pods matching a label selector
(one port on each, as the Gateway API Inference Extension's InferencePool names them). The picker's scheduling
profile is kept as written here and checked by the picker's plugin registry at start, because only the picker
knows its plugins and their parameters (``epp/scheduling/registry.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from tokenlabs.config_reader import Section
from tokenlabs.errors import ConfigError
from tokenlabs.server_settings import ServerSettings


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: Any, key: str) -> Endpoint:
        host, sep, port = text.rpartition(":") if isinstance(text, str) else ("", "", "")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(key, text, "must be 'host:port'")
        return cls(host.strip("[]"), int(port))


@dataclass(frozen=True)
class PodSelector:
    """Ready pods in ``namespace`` whose labels include every ``match_labels`` pair, reached on ``target_port``."""

    namespace: str
    match_labels: Mapping[str, str]
    target_port: int

    @property
    def label_selector(self) -> str:
        return ",".join(f"{key}={value}" for key, value in sorted(self.match_labels.items()))


@dataclass(frozen=True)
class PoolSettings:
    """Exactly one of ``endpoints`` (static) and ``pods`` (Kubernetes) is set."""

    name: str
    endpoints: tuple[Endpoint, ...] = ()
    pods: PodSelector | None = None
    metrics_path: str = "/metrics"


class SaturationMode(StrEnum):
    """What the picker does when every endpoint of a pool is saturated."""

    SHED = "shed"  # answer 429 at once: the client retries later, the workers keep their latency
    QUEUE = "queue"  # hold the request in the picker until an endpoint has room or the timeout passes, then send it
    OFF = "off"  # send it anyway: the workers queue it


@dataclass(frozen=True)
class SaturationSettings:
    """An endpoint is saturated when its waiting queue reaches ``queue_depth`` or its KV cache usage reaches
    ``kv_cache_usage`` (GIE's defaults 5 and 0.8). Endpoints without fresh metrics are not candidates at all: a pool
    with none left is unavailable (503), not saturated."""

    mode: SaturationMode = SaturationMode.QUEUE
    queue_depth: int = 5
    kv_cache_usage: float = 0.8
    queue_timeout_s: float = 1.0
    max_queued: int = 1000


@dataclass(frozen=True)
class EppSettings(ServerSettings):
    """Where the picker listens, how it watches its endpoints, and its scheduling profile."""

    scrape_interval_s: float = 0.1
    scrape_timeout_s: float = 1.0
    metrics_staleness_s: float = 2.0
    fallbacks: int = 2
    saturation: SaturationSettings = SaturationSettings()
    scheduling: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


def parse_pools(section: Section, default_namespace: str) -> dict[str, PoolSettings]:
    pools: dict[str, PoolSettings] = {}
    for name, _ in section.items():
        pools[name] = _parse_pool(section.section(name), name, default_namespace)
    return pools


def _parse_pool(pool: Section, name: str, default_namespace: str) -> PoolSettings:
    metrics_path = pool.string("metrics_path", "/metrics")
    if not metrics_path.startswith("/"):
        raise ConfigError(pool.path_of("metrics_path"), metrics_path, "must be a path starting with '/'")
    has_endpoints = pool.raw("endpoints", None) is not None
    has_selector = pool.raw("selector", None) is not None
    if has_endpoints == has_selector:
        raise ConfigError(pool.path_of("endpoints"), None, "set either 'endpoints' or 'selector' (with target_port)")
    if has_endpoints:
        raw = pool.string_list("endpoints")
        endpoints = tuple(Endpoint.parse(item, f"{pool.path_of('endpoints')}[{i}]") for i, item in enumerate(raw))
        if not endpoints:
            raise ConfigError(pool.path_of("endpoints"), list(raw), "must list at least one endpoint")
        pool.reject_unknown()
        return PoolSettings(name=name, endpoints=endpoints, metrics_path=metrics_path)
    labels = pool.section("selector")
    match_labels = {key: labels.string(key) for key, _ in labels.items()}
    if not match_labels:
        raise ConfigError(pool.path_of("selector"), {}, "must name at least one label")
    selector = PodSelector(
        namespace=pool.string("namespace", default_namespace),
        match_labels=MappingProxyType(match_labels),
        target_port=pool.integer("target_port", minimum=1, maximum=65535),
    )
    pool.reject_unknown()
    return PoolSettings(name=name, pods=selector, metrics_path=metrics_path)


def parse_epp(section: Section, host: str, grpc_port: int, metrics_port: int, drain_seconds: float) -> EppSettings:
    """The ``epp:`` section; the server keys' defaults come from the caller so all three servers share them."""
    interval_ms = section.number("scrape_interval_ms", 100.0, minimum=1.0)
    timeout_ms = section.number("scrape_timeout_ms", 1000.0, minimum=1.0)
    staleness_ms = section.number("metrics_staleness_ms", 2000.0, minimum=1.0)
    if staleness_ms < interval_ms:
        raise ConfigError(section.path_of("metrics_staleness_ms"), staleness_ms, "must be >= scrape_interval_ms")
    scheduling = section.raw("scheduling", {})
    if not isinstance(scheduling, Mapping):
        raise ConfigError(section.path_of("scheduling"), scheduling, "must be a mapping")
    settings = EppSettings(
        host=section.string("host", host),
        grpc_port=section.integer("grpc_port", grpc_port, minimum=1, maximum=65535),
        metrics_port=section.integer("metrics_port", metrics_port, minimum=1, maximum=65535),
        drain_seconds=section.number("drain_seconds", drain_seconds),
        scrape_interval_s=interval_ms / 1000,
        scrape_timeout_s=timeout_ms / 1000,
        metrics_staleness_s=staleness_ms / 1000,
        fallbacks=section.integer("fallbacks", 2, maximum=16),
        saturation=_parse_saturation(section.section("saturation")),
        scheduling=MappingProxyType(dict(scheduling)),
    )
    section.reject_unknown()
    return settings


def _parse_saturation(section: Section) -> SaturationSettings:
    usage = section.number("kv_cache_usage", 0.8)
    if usage > 1.0:
        raise ConfigError(section.path_of("kv_cache_usage"), usage, "must be a fraction between 0 and 1")
    settings = SaturationSettings(
        mode=SaturationMode(section.string("mode", SaturationMode.QUEUE.value, choices=tuple(SaturationMode))),
        queue_depth=section.integer("queue_depth", 5, minimum=1),
        kv_cache_usage=usage,
        queue_timeout_s=section.number("queue_timeout_ms", 1000.0) / 1000,
        max_queued=section.integer("max_queued", 1000),
    )
    section.reject_unknown()
    return settings
