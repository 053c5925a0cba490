from collections.abc import Iterator

import pytest

from tokenlabs.telemetry import Telemetry


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    telemetry = Telemetry.create("quota-test")
    yield telemetry
    telemetry.shutdown()
