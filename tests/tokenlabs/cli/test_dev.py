import base64
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO, repo_settings
from tokenlabs.cli import main
from tokenlabs.cli.dev import banner, demo_keys


def test_demo_keys_read_string_data_and_base64_data(tmp_path: Path) -> None:
    annotations = {"kuadrant.io/groups": "pro", "secret.kuadrant.io/user-id": "acme"}
    documents = [
        {"kind": "Secret", "metadata": {"annotations": annotations}, "stringData": {"api_key": "k1"}},
        {
            "kind": "Secret",
            "metadata": {"annotations": {**annotations, "secret.kuadrant.io/user-id": "b64"}},
            "data": {"api_key": base64.b64encode(b"k2").decode()},
        },
        {"kind": "ConfigMap", "data": {"api_key": "ignored"}},
    ]
    (tmp_path / "tenants.yaml").write_text(yaml.safe_dump_all(documents))
    assert demo_keys(tmp_path) == [("acme", "pro", "k1"), ("b64", "pro", "k2")]


def test_banner_lists_every_model_and_a_try_command_per_kind() -> None:
    text = banner(repo_settings())
    assert "hexgrad/Kokoro-82M" in text and "speech, pool speech" in text
    assert "nvidia/NVIDIA-Nemotron-Nano-12B-v2-VL-FP8  chat, pool nemotron-vl" in text
    assert "/v1/chat/completions" in text and '"model": "meta-llama/Llama-3.1-8B-Instruct"' in text
    assert "/v1/audio/speech" in text and '"model": "hexgrad/Kokoro-82M"' in text and "-o hello.wav" in text


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--engine-pools", "speech"], "--engine-pools: pool 'speech' must serve only chat models"),
        (["--engine-pools", "nope"], "--engine-pools: pool 'nope' is not in the config"),
        (["--engine-model-dir", "{empty}"], "is not a model checkpoint: it has no config.json"),
    ],
)
def test_engine_torch_refuses_what_it_cannot_start_before_starting_anything(
    arguments: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    filled = [argument.format(empty=tmp_path) for argument in arguments]
    with pytest.raises(SystemExit) as exit_:
        main(["dev", "--config", str(REPO / "tokenlabs.yaml"), "--engine", "torch", *filled])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
