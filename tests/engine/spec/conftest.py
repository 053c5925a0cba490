from __future__ import annotations

from pathlib import Path

import pytest

from engine.spec.models.tiny import TinySpec, ensure_tiny
from engine.spec.runner import Runner, set_threads
from engine.spec.weights import ModelWeights, load_checkpoint

# Four layers so that an early exit has layers on both sides; initializer_range 0.1 so that greedy decoding wanders
# instead of repeating one token; 40 training files keep the tokenizer fast to train (~1 s).
TINY = TinySpec(num_layers=4, initializer_range=0.1, training_files=40)
CAPACITY = 256


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny(tmp_path_factory.mktemp("tiny-llama"), TINY)


@pytest.fixture(scope="session")
def tiny_weights(tiny_dir: Path) -> ModelWeights:
    return load_checkpoint(tiny_dir)


@pytest.fixture
def runner(tiny_weights: ModelWeights) -> Runner:
    return Runner(tiny_weights, CAPACITY)


@pytest.fixture(scope="session", autouse=True)
def one_thread() -> None:
    # The tiny model gains nothing from threads, and with two OpenMP threads on two cores any other busy process
    # makes them wait on each other: a 0.3 s test was seen taking 18 s.
    set_threads(1)
