import base64
from pathlib import Path

import yaml

from tokenlabs.cli.dev import demo_keys


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
