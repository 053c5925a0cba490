from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.stack import RunningStack, stack_config, start_stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """One real stack for the whole session: Envoy, authz, extproc, epp and simulated workers."""
    running = start_stack(stack_config(tmp_path_factory.mktemp("stack")))
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("work")
