"""The sweep's offline gate curves on the tiny model: coverage, thresholds and agreement are consistent."""

from __future__ import annotations

import math

import pytest
import torch

from bench.engine_sweep import COVERAGES, gate_curves, threshold_at
from engine.spec.calibration import CalibrationSequence
from engine.spec.gate import GATE_KINDS
from engine.spec.greedy import greedy_generate
from engine.spec.heads import identity_head
from engine.spec.models.tiny import TinySpec, ensure_tiny
from engine.spec.runner import Runner
from engine.spec.weights import load_checkpoint


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    directory = ensure_tiny(
        tmp_path_factory.mktemp("tiny"), TinySpec(num_layers=4, initializer_range=0.1, training_files=40)
    )
    return Runner(load_checkpoint(directory), 128)


def test_gate_curves_cover_every_measure_and_end_at_the_overall_agreement(runner: Runner) -> None:
    prompts = [[11, 400, 23, 1800, 5], list(range(200, 230)), [30, 31, 32, 30, 31, 32, 30]]
    sequences = [CalibrationSequence(p, greedy_generate(runner, p, 24)) for p in prompts]
    head = identity_head(runner.config.hidden_size, torch.arange(runner.config.vocab_size), 2)
    result = gate_curves(runner, head, sequences)
    assert result["k"] == 2 and result["positions"] == 3 * 24
    for kind in GATE_KINDS:
        points = result["curves"][kind]
        assert [p["coverage"] for p in points] == list(COVERAGES)
        thresholds = [p["threshold"] for p in points]
        assert thresholds == sorted(thresholds) and thresholds[-1] == math.inf
        assert points[-1]["alpha"] == pytest.approx(result["alpha"])
        assert all(0 <= p["alpha"] <= 1 for p in points)
        assert threshold_at(result["curves"], kind, 0.5) == points[COVERAGES.index(0.5)]["threshold"]
