from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kube_api import kube_api
from tests.redis_server import RedisServer, redis_server_path

__all__ = ["kube_api", "redis_server"]  # fixtures for every test: a fake Kubernetes API, a real Redis


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A started ``redis-server`` on a free loopback port, stopped after the test whatever happened."""
    if redis_server_path() is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
