from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from engine.serve.model import LoadedModel, load_model
from engine.spec.models.tiny import ensure_tiny
from engine.spec.runner import set_threads
from tests.engine.serve.support import TINY


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny(tmp_path_factory.mktemp("tiny-llama"), TINY)


@pytest.fixture(scope="session")
def tiny_model(tiny_dir: Path) -> LoadedModel:
    # fp32: the speculative loop's output then equals the greedy loop's token for token.
    return load_model(tiny_dir, "fp32")


@pytest.fixture(scope="session", autouse=True)
def one_thread() -> None:
    # The tiny model gains nothing from threads, and two OpenMP threads on two busy cores wait on each other.
    set_threads(1)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
