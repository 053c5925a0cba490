from pathlib import Path

import pytest
import yaml

from tokenlabs.errors import ConfigError
from tokenlabs.picker_settings import Endpoint
from tokenlabs.settings import ModelKind, Settings, apply_env_overrides, load, parse

REPO = Path(__file__).resolve().parents[2]
MINIMAL = {
    "tiers": {"free": {"requests_per_minute": 10}},
    "models": {"m": {"pool": "p"}},
    "pools": {"p": {"endpoints": ["127.0.0.1:8000"]}},
}


def parse_with(**changes: object) -> Settings:
    document = yaml.safe_load(yaml.safe_dump(MINIMAL))
    document.update(changes)
    return parse(document, base_dir=Path("/cfg"))


def test_shipped_config_loads_with_the_contract_tiers() -> None:
    settings = load(REPO / "tokenlabs.yaml", environ={})
    assert settings.tiers["free"].requests_per_minute == 10
    assert settings.tiers["pro"].tokens_per_day == 500_000
    assert settings.tiers["enterprise"].requests_per_day == 50_000
    assert settings.models["meta-llama/Llama-3.1-8B-Instruct"].pool == "llama"
    assert len(settings.pools["llama"].endpoints) == 2
    assert settings.tenants.directory == REPO / "manifests/examples/tenants"
    assert settings.source == REPO / "tokenlabs.yaml"


def test_defaults_fill_every_optional_section() -> None:
    settings = parse_with()
    assert settings.quota_store.url == "memory://"
    assert settings.quota_store.failure_mode == "open"
    assert settings.gateway.port == 8080 and settings.gateway.admin_port == 9901
    assert settings.tiers["free"].models == ("*",)
    assert settings.tenants.directory == Path("/cfg/manifests/examples/tenants")


@pytest.mark.parametrize(
    ("changes", "key", "message"),
    [
        # A typo must not silently fall back to a default.
        ({"quota_stor": "redis://x"}, "quota_stor", "is not a known setting"),
        ({"tiers": {"free": {"requests_per_minute": -1}}}, "tiers.free.requests_per_minute", ">= 0"),
        ({"tiers": {"free": {"requests_per_minute": "ten"}}}, "tiers.free.requests_per_minute", "integer"),
        ({"tiers": {"free": {"models": ["nope"]}}}, "tiers.free.models", "not configured"),
        ({"models": {"m": {"pool": "missing"}}}, "models.m.pool", "not configured"),
        ({"pools": {"p": {"endpoints": ["localhost"]}}}, "pools.p.endpoints[0]", "host:port"),
        ({"pools": {"p": {"endpoints": []}}}, "pools.p.endpoints", "at least one"),
        ({"quota_store": "postgres://x"}, "quota_store", "redis://"),
        ({"gateway": {"port": 70000}}, "gateway.port", "between 1 and 65535"),
        ({"tenants": {"source": "ldap"}}, "tenants.source", "one of directory, kubernetes"),
        ({"tiers": {}}, "tiers", "at least one tier"),
        ({"authz": {"grpc_port": True}}, "authz.grpc_port", "integer"),
    ],
)
def test_bad_values_name_the_key_and_value(changes: dict[str, object], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_with(**changes)
    assert caught.value.key == key
    assert message in str(caught.value)
    assert f"'{key}'" in str(caught.value)


def test_env_overrides_nest_and_parse_scalars() -> None:
    document = apply_env_overrides(
        {"authz": {"grpc_port": 1}},
        {
            "TOKENLABS_AUTHZ__GRPC_PORT": "9999",
            "TOKENLABS_QUOTA_STORE": "redis://127.0.0.1:6379/0",
            "TOKENLABS_CONFIG": "ignored.yaml",
            "TOKENLABS_ENVOY": "/usr/bin/envoy",
            "TOKENLABS_ENVOY_TEMPLATE": "/etc/tokenlabs/bootstrap.yaml.j2",
            "TOKENLABS_MODEL_CACHE": "/models",
            "OTHER": "x",
        },
    )
    assert document == {"authz": {"grpc_port": 9999}, "quota_store": "redis://127.0.0.1:6379/0"}


def test_env_override_errors_are_reported_like_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    with pytest.raises(ConfigError, match=r"'gateway\.port'"):
        load(path, environ={"TOKENLABS_GATEWAY__PORT": "0"})


def test_unreadable_and_invalid_files_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load(tmp_path / "missing.yaml", environ={})
    broken = tmp_path / "broken.yaml"
    broken.write_text("tiers: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(broken, environ={})


@pytest.mark.parametrize(
    ("text", "expected"), [("10.0.0.1:80", Endpoint("10.0.0.1", 80)), ("[::1]:9", Endpoint("::1", 9))]
)
def test_endpoint_parse(text: str, expected: Endpoint) -> None:
    assert Endpoint.parse(text, "k") == expected


def test_models_are_chat_by_default_and_speech_models_are_priced_per_character() -> None:
    settings = parse_with(
        models={
            "m": {"pool": "p", "input_usd_per_1m_tokens": 0.1, "output_usd_per_1m_tokens": 0.2},
            "tts": {"pool": "p", "kind": "speech", "input_usd_per_1m_characters": 15},
        }
    )
    chat, speech = settings.models["m"], settings.models["tts"]
    assert (chat.kind, chat.input_usd_per_1m_tokens, chat.input_usd_per_1m_characters) == (ModelKind.CHAT, 0.1, 0.0)
    assert (speech.kind, speech.input_usd_per_1m_characters) == (ModelKind.SPEECH, 15.0)
    assert (speech.input_usd_per_1m_tokens, speech.output_usd_per_1m_tokens) == (0.0, 0.0)
    assert parse_with(models={"tts": {"pool": "p", "kind": "speech"}}).models["tts"].input_usd_per_1m_characters == 0


@pytest.mark.parametrize(
    ("model", "key", "message"),
    [
        ({"kind": "image"}, "models.m.kind", "one of chat, speech"),
        ({"kind": "speech", "input_usd_per_1m_tokens": 0.1}, "models.m.input_usd_per_1m_tokens", "chat models only"),
        ({"kind": "speech", "output_usd_per_1m_tokens": 0}, "models.m.output_usd_per_1m_tokens", "chat models only"),
        ({"input_usd_per_1m_characters": 15}, "models.m.input_usd_per_1m_characters", "speech models only"),
        ({"kind": "chat", "input_usd_per_1m_characters": 1}, "models.m.input_usd_per_1m_characters", "is chat"),
        ({"kind": "speech", "input_usd_per_1m_characters": -1}, "models.m.input_usd_per_1m_characters", ">= 0"),
        ({"kind": "speech", "input_usd_per_1m_characters": "15"}, "models.m.input_usd_per_1m_characters", "number"),
    ],
)
def test_model_kind_and_its_prices_are_checked(model: dict[str, object], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_with(models={"m": {"pool": "p", **model}})
    assert caught.value.key == key
    assert message in str(caught.value)


def test_shipped_config_has_a_speech_model_the_free_tier_may_not_use() -> None:
    settings = load(REPO / "tokenlabs.yaml", environ={})
    speech = settings.models["hexgrad/Kokoro-82M"]
    assert (speech.kind, speech.pool) == (ModelKind.SPEECH, "speech")
    assert speech.input_usd_per_1m_characters > 0
    assert [endpoint.address for endpoint in settings.pools["speech"].endpoints] == ["127.0.0.1:8104"]
    assert not settings.tiers["free"].allows_model(speech.name)
    assert settings.tiers["pro"].allows_model(speech.name)
