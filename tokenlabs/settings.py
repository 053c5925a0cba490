"""The one frozen ``Settings`` object, loaded once in ``main()`` from YAML plus environment overrides.

File: ``--config PATH``, else ``$TOKENLABS_CONFIG``, else ``./tokenlabs.yaml``. Environment overrides use the
prefix ``TOKENLABS_`` and ``__`` between levels, values parsed as YAML scalars:
``TOKENLABS_QUOTA_STORE=redis://10.0.0.5:6379/0``, ``TOKENLABS_AUTHZ__GRPC_PORT=9101``. Relative paths in the file
are relative to the file's folder.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from tokenlabs.config_reader import Section
from tokenlabs.errors import ConfigError
from tokenlabs.picker_settings import EppSettings, PoolSettings, parse_epp, parse_pools
from tokenlabs.server_settings import ServerSettings

ENV_PREFIX = "TOKENLABS_"
CONFIG_ENV = "TOKENLABS_CONFIG"
ENVOY_BINARY_ENV = "TOKENLABS_ENVOY"
ENVOY_TEMPLATE_ENV = "TOKENLABS_ENVOY_TEMPLATE"
MODEL_CACHE_ENV = "TOKENLABS_MODEL_CACHE"  # read by engine/spec/models, which does not import tokenlabs
# Variables with the prefix that name files and tools, not config keys: never read as overrides.
NOT_OVERRIDES = frozenset({CONFIG_ENV, ENVOY_BINARY_ENV, ENVOY_TEMPLATE_ENV, MODEL_CACHE_ENV})
DEFAULT_CONFIG = "tokenlabs.yaml"
ALL_MODELS = "*"
ALL_ENDPOINTS = "*"


@dataclass(frozen=True)
class TierSettings:
    name: str
    requests_per_minute: int | None
    requests_per_day: int | None
    tokens_per_minute: int | None
    tokens_per_day: int | None
    models: tuple[str, ...]
    prompt_tokens_per_minute: int | None = None
    prompt_tokens_per_day: int | None = None
    completion_tokens_per_minute: int | None = None
    completion_tokens_per_day: int | None = None
    endpoints: tuple[str, ...] = (ALL_ENDPOINTS,)

    def allows_model(self, model: str) -> bool:
        return ALL_MODELS in self.models or model in self.models


@dataclass(frozen=True)
class TenantSourceSettings:
    kind: str
    directory: Path
    namespace: str
    label_selector: str


class ModelKind(StrEnum):
    """What a model does, and so which API endpoints may name it."""

    CHAT = "chat"  # /v1/chat/completions and /v1/completions; priced per token
    SPEECH = "speech"  # /v1/audio/speech; priced per input character


# The price keys only one kind of model may set: a token price on a speech model would never be charged.
_PRICE_KEYS = {
    ModelKind.CHAT: ("input_usd_per_1m_tokens", "output_usd_per_1m_tokens"),
    ModelKind.SPEECH: ("input_usd_per_1m_characters",),
}


@dataclass(frozen=True)
class ModelSettings:
    """One served model. Prices of the other kind are always 0 (the config may not set them)."""

    name: str
    pool: str
    input_usd_per_1m_tokens: float
    output_usd_per_1m_tokens: float
    kind: ModelKind = ModelKind.CHAT
    input_usd_per_1m_characters: float = 0.0


@dataclass(frozen=True)
class GatewaySettings:
    host: str
    port: int
    admin_port: int
    request_timeout_seconds: float


@dataclass(frozen=True)
class QuotaStoreSettings:
    """Where request and token counters live, and what happens when that place is unreachable.

    ``failure_mode``: ``open`` keeps admitting while counting in each replica's memory (overshoot bounded by
    replicas times the limit) until the store answers again; ``closed`` answers 503 until it does.
    """

    url: str
    failure_mode: str
    timeout_s: float

    @property
    def is_memory(self) -> bool:
        return self.url.startswith("memory://")


@dataclass(frozen=True)
class LimitSettings:
    """Request size, and how token reservations are estimated at admission (see extproc/quota.py)."""

    max_request_body_bytes: int
    reserve_default_completion_tokens: int = 1024
    reserve_max_tokens: int = 32768
    reserve_image_tokens: int = 1024
    reserve_bytes_per_token: int = 4


@dataclass(frozen=True)
class Settings:
    tiers: Mapping[str, TierSettings]
    tenants: TenantSourceSettings
    models: Mapping[str, ModelSettings]
    pools: Mapping[str, PoolSettings]
    quota_store: QuotaStoreSettings
    limits: LimitSettings
    gateway: GatewaySettings
    authz: ServerSettings
    extproc: ServerSettings
    epp: EppSettings
    engine_sim: Mapping[str, Any]
    log_level: str
    source: Path | None = field(default=None, compare=False)


_DEFAULT_PORTS = {"authz": (9001, 9091), "extproc": (9002, 9092), "epp": (9003, 9093)}


def load(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the config file and the environment; raise ``ConfigError`` naming the first bad key."""
    environ = os.environ if environ is None else environ
    config_path = Path(path or environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    try:
        text = config_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("--config", str(config_path), f"cannot be read ({exc.strerror})") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("--config", str(config_path), f"is not valid YAML ({exc})") from None
    document = apply_env_overrides(document or {}, environ)
    settings = parse(document, base_dir=config_path.resolve().parent)
    return dataclasses.replace(settings, source=config_path.resolve())


def apply_env_overrides(document: Any, environ: Mapping[str, str]) -> Any:
    if not isinstance(document, dict):
        raise ConfigError("<root>", document, "must be a mapping")
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name in NOT_OVERRIDES:
            continue
        keys = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if not all(keys):
            raise ConfigError(name, value, "environment override has an empty key segment")
        node = document
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(".".join(keys), value, f"environment override {name} crosses a non-mapping")
            node = child
        try:
            node[keys[-1]] = yaml.safe_load(value) if value else value
        except yaml.YAMLError:
            node[keys[-1]] = value
    return document


def parse(document: Any, base_dir: Path) -> Settings:
    root = Section(document, "")
    tiers = _parse_tiers(root.section("tiers"))
    tenants = _parse_tenants(root.section("tenants"), base_dir)
    pools = parse_pools(root.section("pools"), default_namespace=tenants.namespace)
    models = _parse_models(root.section("models"), pools)
    for tier in tiers.values():
        for model in tier.models:
            if model != ALL_MODELS and model not in models:
                raise ConfigError(f"tiers.{tier.name}.models", model, "names a model that is not configured")
    settings = Settings(
        tiers=MappingProxyType(tiers),
        tenants=tenants,
        models=MappingProxyType(models),
        pools=MappingProxyType(pools),
        quota_store=_parse_quota_store(root),
        limits=_parse_limits(root.section("limits")),
        gateway=_parse_gateway(root.section("gateway")),
        authz=_parse_server(root.section("authz"), "authz"),
        extproc=_parse_server(root.section("extproc"), "extproc"),
        epp=_parse_epp(root.section("epp")),
        engine_sim=MappingProxyType(dict(root.section("engine").section("sim").items())),
        log_level=root.string("log_level", "info", choices=("debug", "info", "warning", "error")),
    )
    root.reject_unknown()
    return settings


def _parse_tiers(section: Section) -> dict[str, TierSettings]:
    tiers: dict[str, TierSettings] = {}
    for name, _ in section.items():
        tier = section.section(name)
        tiers[name] = TierSettings(
            name=name,
            requests_per_minute=tier.optional_integer("requests_per_minute"),
            requests_per_day=tier.optional_integer("requests_per_day"),
            tokens_per_minute=tier.optional_integer("tokens_per_minute"),
            tokens_per_day=tier.optional_integer("tokens_per_day"),
            models=tier.string_list("models", [ALL_MODELS]),
            prompt_tokens_per_minute=tier.optional_integer("prompt_tokens_per_minute"),
            prompt_tokens_per_day=tier.optional_integer("prompt_tokens_per_day"),
            completion_tokens_per_minute=tier.optional_integer("completion_tokens_per_minute"),
            completion_tokens_per_day=tier.optional_integer("completion_tokens_per_day"),
            endpoints=_parse_endpoints(tier),
        )
        tier.reject_unknown()
    if not tiers:
        raise ConfigError("tiers", None, "must define at least one tier")
    return tiers


def _parse_endpoints(tier: Section) -> tuple[str, ...]:
    endpoints = tier.string_list("endpoints", [ALL_ENDPOINTS])
    for endpoint in endpoints:
        if endpoint != ALL_ENDPOINTS and not endpoint.startswith("/"):
            raise ConfigError(tier.path_of("endpoints"), endpoint, "must be '*' or paths like /v1/chat/completions")
    return endpoints


def _parse_models(section: Section, pools: Mapping[str, PoolSettings]) -> dict[str, ModelSettings]:
    models: dict[str, ModelSettings] = {}
    for name, _ in section.items():
        model = section.section(name)
        pool = model.string("pool")
        if pool not in pools:
            raise ConfigError(model.path_of("pool"), pool, "names a pool that is not configured")
        kind = ModelKind(model.string("kind", ModelKind.CHAT.value, choices=tuple(ModelKind)))
        _reject_prices_of_other_kinds(model, kind)
        models[name] = ModelSettings(
            name=name,
            pool=pool,
            input_usd_per_1m_tokens=model.number("input_usd_per_1m_tokens", 0.0),
            output_usd_per_1m_tokens=model.number("output_usd_per_1m_tokens", 0.0),
            kind=kind,
            input_usd_per_1m_characters=model.number("input_usd_per_1m_characters", 0.0),
        )
        model.reject_unknown()
    if not models:
        raise ConfigError("models", None, "must define at least one model")
    return models


def _reject_prices_of_other_kinds(model: Section, kind: ModelKind) -> None:
    for other, keys in _PRICE_KEYS.items():
        if other is kind:
            continue
        for key in keys:
            value = model.raw(key, None)
            if value is not None:
                raise ConfigError(model.path_of(key), value, f"applies to {other} models only; this model is {kind}")


def _parse_tenants(section: Section, base_dir: Path) -> TenantSourceSettings:
    kind = section.string("source", "directory", choices=("directory", "kubernetes"))
    directory = Path(section.string("directory", "manifests/examples/tenants"))
    settings = TenantSourceSettings(
        kind=kind,
        directory=directory if directory.is_absolute() else base_dir / directory,
        namespace=section.string("namespace", "kuadrant-system"),
        label_selector=section.string("label_selector", "authorino.kuadrant.io/managed-by=authorino"),
    )
    section.reject_unknown()
    return settings


def _parse_quota_store(root: Section) -> QuotaStoreSettings:
    url = root.string("quota_store", "memory://")
    if not url.startswith(("memory://", "redis://", "rediss://", "unix://")):
        raise ConfigError("quota_store", url, "must be memory:// or a redis:// URL")
    return QuotaStoreSettings(
        url=url,
        failure_mode=root.string("quota_store_failure_mode", "open", choices=("open", "closed")),
        timeout_s=root.integer("quota_store_timeout_ms", 500, minimum=1, maximum=60_000) / 1000,
    )


def _parse_limits(section: Section) -> LimitSettings:
    settings = LimitSettings(
        max_request_body_bytes=section.integer("max_request_body_bytes", 8 * 1024 * 1024, minimum=1024),
        reserve_default_completion_tokens=section.integer("reserve_default_completion_tokens", 1024, minimum=1),
        reserve_max_tokens=section.integer("reserve_max_tokens", 32768, minimum=1),
        reserve_image_tokens=section.integer("reserve_image_tokens", 1024, minimum=0),
        reserve_bytes_per_token=section.integer("reserve_bytes_per_token", 4, minimum=1, maximum=16),
    )
    section.reject_unknown()
    return settings


def _parse_gateway(section: Section) -> GatewaySettings:
    settings = GatewaySettings(
        host=section.string("host", "127.0.0.1"),
        port=section.integer("port", 8080, minimum=1, maximum=65535),
        admin_port=section.integer("admin_port", 9901, minimum=1, maximum=65535),
        request_timeout_seconds=section.number("request_timeout_seconds", 300.0),
    )
    section.reject_unknown()
    return settings


def _parse_server(section: Section, name: str) -> ServerSettings:
    grpc_port, metrics_port = _DEFAULT_PORTS[name]
    settings = ServerSettings(
        host=section.string("host", "127.0.0.1"),
        grpc_port=section.integer("grpc_port", grpc_port, minimum=1, maximum=65535),
        metrics_port=section.integer("metrics_port", metrics_port, minimum=1, maximum=65535),
        drain_seconds=section.number("drain_seconds", 10.0),
    )
    section.reject_unknown()
    return settings


def _parse_epp(section: Section) -> EppSettings:
    grpc_port, metrics_port = _DEFAULT_PORTS["epp"]
    return parse_epp(section, host="127.0.0.1", grpc_port=grpc_port, metrics_port=metrics_port, drain_seconds=10.0)
