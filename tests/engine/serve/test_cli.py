"""``tokenlabs engine serve``: its options agree with the engine's, and every bad argument or missing piece is a
clear exit 2 before anything listens."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from engine.serve.drafting import drafter_factory
from engine.serve.model import LoadedModel
from engine.serve.options import SPEC_MODES, ServeOptions
from engine.spec.bench_modes import ModeUnavailableError
from engine.spec.runner import Runner
from tokenlabs.cli import main
from tokenlabs.cli.engine_serve import add_arguments


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="serve")
    add_arguments(parser)
    return parser


def test_every_spec_mode_builds_its_drafter_or_says_what_it_needs(tiny_model: LoadedModel) -> None:
    runner = Runner(tiny_model.weights, 16)
    for mode in SPEC_MODES:
        if mode in ("early_exit", "hybrid"):
            with pytest.raises(ModeUnavailableError, match="--head"):
                drafter_factory(mode, runner, 4, None)
        else:
            assert drafter_factory(mode, runner, 4, None)() is not None
    with pytest.raises(ValueError, match="--gate"):
        drafter_factory("lookup", runner, 4, None, gate="certainty")


def test_arguments_build_the_options() -> None:
    args = parser().parse_args(
        ["--model", "tiny", "--served-model-name", "a", "b", "--port", "0", "--max-model-len", "512"]
    )
    assert (args.served_model_names, args.port, args.max_model_len) == (["a", "b"], 0, 512)
    assert ServeOptions(model="tiny", served_model_names=("a", "b")).model_names == ("a", "b")
    assert ServeOptions(model="smollm2").model_names == ("HuggingFaceTB/SmolLM2-135M-Instruct",)


@pytest.mark.parametrize(
    "arguments", [["--max-draft", "0"], ["--port", "70000"], ["--spec-mode", "fast"], ["--threads", "two"]]
)
def test_bad_arguments_exit_2(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(arguments)
    assert exit_.value.code == 2
    assert arguments[0] in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--model-dir", "{empty}"], "has no config.json"),
        (["--model-dir", "{tiny}", "--spec-mode", "early_exit"], "early exit needs a fitted exit head"),
        (["--model-dir", "{tiny}", "--max-model-len", "100000"], "exceeds the model's 2048 positions"),
    ],
)
def test_a_model_that_cannot_be_served_exits_2_saying_why(
    arguments: list[str], message: str, tmp_path: Path, tiny_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    filled = [argument.format(empty=tmp_path, tiny=tiny_dir) for argument in arguments]
    assert main(["engine", "serve", "--model", "tiny", "--threads", "1", *filled]) == 2
    error = capsys.readouterr().err
    assert error.startswith("tokenlabs engine serve: ") and message in error
