"""One real vLLM server and one real gateway stack in front of it, shared by every test in this folder.

These tests run under ``make test-vllm``, which makes the vLLM venv and the tiny model and names them in
``REAL_VLLM_PYTHON`` / ``REAL_VLLM_MODEL``; without those (plain ``make test``) they are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.stack import RunningStack, stack_config, start_stack
from tests.vllm.config import with_vllm_model
from tests.vllm.server import MODEL_VARIABLE, PYTHON_VARIABLE, VllmInstall, VllmServer
from tokenlabs.devstack import free_ports

# vLLM starts in 30-75 s on two quiet cores; these cores are shared, so leave room.
STARTUP_TIMEOUT_S = 300.0
# Per test, fixture set-up included: the first test pays for vLLM's start.
TEST_TIMEOUT_S = 600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    installed = VllmInstall.from_environment() is not None
    skip = pytest.mark.skip(reason=f"real vLLM not set up: run `make test-vllm` ({PYTHON_VARIABLE}, {MODEL_VARIABLE})")
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT_S))
            if not installed:
                item.add_marker(skip)


@pytest.fixture(scope="package")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    install = VllmInstall.from_environment()
    assert install is not None  # collection skips every test otherwise
    server = VllmServer(install, tmp_path_factory.mktemp("vllm"), free_ports(1)[0])
    server.start()
    try:
        seconds = server.wait_healthy(STARTUP_TIMEOUT_S)
        print(f"\nvLLM healthy after {seconds:.1f} s on {server.endpoint}")
        yield server
    finally:
        stragglers = server.stop()
    assert not stragglers, f"vLLM processes {stragglers} needed SIGKILL after SIGTERM:\n{server.log_tail()}"


@pytest.fixture(scope="package")
def stack(vllm: VllmServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The real gateway with the shipped models plus ``tiny-llama``. No simulated workers are started (they would
    take the vLLM port too): the shipped models' pools stay empty, and only ``tiny-llama`` is asked for here."""
    config_path = stack_config(tmp_path_factory.mktemp("stack"))
    with_vllm_model(config_path, vllm.endpoint)
    running = start_stack(config_path, timeout=120.0, extra_args=("--engine", "none"))
    yield running
    assert running.stop() == 0, running.log()
