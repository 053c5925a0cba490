"""The shipped Envoy bootstrap renders from config and passes the real Envoy's own validation."""

import dataclasses
import subprocess
from pathlib import Path

import yaml

from tests.helpers import repo_settings
from tokenlabs import headers
from tokenlabs.cli import main
from tokenlabs.envoy_config import find_envoy, render_bootstrap


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(path), "--disable-hot-restart", "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_rendered_bootstrap_is_valid_for_envoy(tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    assert (
        main(["envoy", "render", "--config", str(Path(__file__).parents[2] / "tokenlabs.yaml"), "-o", str(path)]) == 0
    )
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_bootstrap_wires_the_chain_in_order() -> None:
    settings = repo_settings()
    document = yaml.safe_load(render_bootstrap(settings))
    listener = document["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 8080}
    assert document["admin"]["address"]["socket_address"]["port_value"] == 9901
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert [f["name"] for f in manager["http_filters"]] == [
        "envoy.filters.http.buffer",  # first: no plugin may wait while a body outgrows Envoy's buffers
        "envoy.filters.http.ext_authz",
        "tokenlabs.extproc",
        "tokenlabs.epp",
        "envoy.filters.http.router",
    ]
    assert manager["http_filters"][0]["typed_config"]["max_request_bytes"] == settings.limits.max_request_body_bytes
    removed = [m["remove"] for m in manager["early_header_mutation_extensions"][0]["typed_config"]["mutations"]]
    assert removed == list(headers.GATEWAY_OWNED)
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    by_model = {r["match"]["headers"][0]["string_match"]["exact"]: r["route"]["cluster"] for r in routes[:-1]}
    assert by_model == {
        "meta-llama/Llama-3.1-8B-Instruct": "pool_llama",
        "nvidia/NVIDIA-Nemotron-Nano-12B-v2-VL-FP8": "pool_nemotron-vl",
        "hexgrad/Kokoro-82M": "pool_speech",
    }
    clusters = {c["name"]: c for c in document["static_resources"]["clusters"]}
    assert clusters["pool_llama"]["original_dst_lb_config"]["http_header_name"] == "x-gateway-destination-endpoint"
    assert clusters["tokenlabs_authz"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"
    ] == {"address": "127.0.0.1", "port_value": 9001}


def test_plugin_servers_named_by_dns_get_strict_dns_clusters(tmp_path: Path) -> None:
    # In Kubernetes the servers are headless Services: Envoy resolves the name to every ready replica.
    settings = repo_settings()
    settings = dataclasses.replace(
        settings, authz=dataclasses.replace(settings.authz, host="tokenlabs-authz.inference.svc.cluster.local")
    )
    document = yaml.safe_load(render_bootstrap(settings))
    types = {
        c["name"]: c["type"] for c in document["static_resources"]["clusters"] if c["name"].startswith("tokenlabs_")
    }
    assert types == {"tokenlabs_authz": "STRICT_DNS", "tokenlabs_extproc": "STATIC", "tokenlabs_epp": "STATIC"}
    path = tmp_path / "envoy.yaml"
    path.write_text(render_bootstrap(settings))
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
