"""Helpers that let a second stack run beside `make run`: distinct free ports, a config moved onto them."""

from pathlib import Path

import yaml

from tokenlabs.devstack import free_ports, on_free_ports
from tokenlabs.settings import parse

REPO = Path(__file__).resolve().parents[2]


def test_free_ports_are_distinct() -> None:
    ports = free_ports(64)
    assert len(set(ports)) == 64


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
