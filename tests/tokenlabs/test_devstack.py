"""Helpers that let a second stack run beside `make run`: distinct free ports, a config moved onto them."""

from itertools import pairwise
from pathlib import Path

import pytest
import yaml

from tests.helpers import repo_settings
from tokenlabs.devstack import (
    FIRST_LISTEN_PORT,
    StackOptions,
    TorchWorkers,
    check_torch_pools,
    ephemeral_range_start,
    free_ports,
    on_free_ports,
    plan,
)
from tokenlabs.settings import parse

REPO = Path(__file__).resolve().parents[2]


def test_free_ports_are_distinct() -> None:
    ports = free_ports(64)
    assert len(set(ports)) == 64


def test_free_ports_stay_below_the_ephemeral_range_that_outgoing_connections_use() -> None:
    assert all(FIRST_LISTEN_PORT <= port < ephemeral_range_start() for port in free_ports(16))


def test_on_free_ports_moves_every_listener_and_keeps_the_rest() -> None:
    original = yaml.safe_load((REPO / "tokenlabs.yaml").read_text())
    moved = on_free_ports(original)
    settings = parse(moved, base_dir=REPO)
    ports = [settings.gateway.port, settings.gateway.admin_port]
    ports += [
        port
        for server in (settings.authz, settings.extproc, settings.epp)
        for port in (server.grpc_port, server.metrics_port)
    ]
    ports += [endpoint.port for pool in settings.pools.values() for endpoint in pool.endpoints]
    assert len(set(ports)) == len(ports) == 12
    assert not set(ports) & {8080, 9901, 9001, 9002, 9003, 9091, 9092, 9093, 8101, 8102, 8103, 8104}
    assert moved["tiers"] == original["tiers"] and moved["models"] == original["models"]
    assert original["gateway"]["port"] == 8080  # the input is not changed


def test_torch_workers_serve_their_pools_and_the_simulator_serves_the_rest(tmp_path: Path) -> None:
    settings = repo_settings()
    torch = TorchWorkers(pools=("llama",), model="tiny", model_dir=tmp_path / "model", threads=1)
    options = StackOptions(REPO / "tokenlabs.yaml", torch_workers=torch)
    children = {child.name: child for child in plan(settings, options, tmp_path / "envoy.yaml")}

    assert list(children) == ["authz", "extproc", "epp", "workers", "torch-llama-1", "torch-llama-2", "envoy"]
    simulated = [value for flag, value in pairwise(children["workers"].argv) if flag == "--worker"]
    assert simulated == [
        "nvidia/NVIDIA-Nemotron-Nano-12B-v2-VL-FP8=127.0.0.1:8103",
        "hexgrad/Kokoro-82M=127.0.0.1:8104",
    ]
    argv = " ".join(children["torch-llama-2"].argv)
    assert argv.endswith(
        f"-m tokenlabs engine serve --model tiny --model-dir {tmp_path / 'model'} "
        "--served-model-name meta-llama/Llama-3.1-8B-Instruct --host 127.0.0.1 --port 8102 --threads 1"
    )


def test_only_pools_of_chat_models_with_static_endpoints_can_run_on_the_torch_engine() -> None:
    settings = repo_settings()
    check_torch_pools(settings, ["llama", "nemotron-vl"])
    with pytest.raises(ValueError, match="pool 'nope' is not in the config"):
        check_torch_pools(settings, ["nope"])
    with pytest.raises(ValueError, match=r"pool 'speech' must serve only chat models .* has speech"):
        check_torch_pools(settings, ["llama", "speech"])
