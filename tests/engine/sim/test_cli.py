"""The command line: option parsing, and the process lifecycle (ready line, clean exit on signals)."""

import argparse
import asyncio
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from engine.sim.cli import add_arguments, parse_worker_spec
from engine.sim.config import SimConfig
from engine.sim.runner import WorkerSpec

REPO = Path(__file__).resolve().parents[3]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sim")
    add_arguments(parser)
    return parser


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("llama=127.0.0.1:8000", WorkerSpec(("llama",), "127.0.0.1", 8000)),
        ("llama,llama-chat=localhost:0", WorkerSpec(("llama", "llama-chat"), "localhost", 0)),
        # Model names may hold ':' and '/'; an IPv6 host goes in brackets.
        ("org/model:8b=[::1]:9000", WorkerSpec(("org/model:8b",), "::1", 9000)),
    ],
)
def test_parse_worker_spec(text: str, expected: WorkerSpec) -> None:
    assert parse_worker_spec(text) == expected


@pytest.mark.parametrize(
    "text", ["llama", "llama=host", "=host:1", "llama=:1", "llama=host:x", "llama=host:70000", "a,,b=host:1"]
)
def test_bad_worker_spec_is_an_error_naming_it(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(repr(text))):
        parse_worker_spec(text)


def test_knob_options_build_the_config() -> None:
    args = make_parser().parse_args(
        ["--worker", "m=127.0.0.1:1", "--worker", "n=127.0.0.1:2", "--itl-ms", "2.5", "--max-num-seqs", "3"]
    )

    assert [spec.model_names for spec in args.workers] == [("m",), ("n",)]
    assert (args.itl_ms, args.max_num_seqs, args.output_tokens) == (2.5, 3, SimConfig().output_tokens)


@pytest.mark.parametrize(("text", "expected"), [("False", False), ("false", False), ("True", True), ("TRUE", True)])
def test_boolean_knobs_take_a_value_as_the_config_file_passes_them(text: str, expected: bool) -> None:
    args = make_parser().parse_args(["--worker", "m=127.0.0.1:1", "--enable-prefix-caching", text])

    assert args.enable_prefix_caching is expected


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-num-seqs", "0", "max_num_seqs must be an integer >= 1, got 0"),
        ("--output-tokens", "1.5", "'1.5' is not a valid int"),
        ("--itl-ms", "-2", "itl_ms must be a finite number >= 0, got -2.0"),
        ("--ttft-base-ms", "fast", "'fast' is not a valid float"),
        ("--enable-prefix-caching", "yes", "'yes' is not a valid bool"),
        ("--max-num-batched-tokens", "0", "max_num_batched_tokens must be an integer >= 1, got 0"),
        ("--drain-seconds", "inf", "drain seconds must be a finite number >= 0, got 'inf'"),
    ],
)
def test_bad_option_is_an_argparse_error_naming_the_value(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        make_parser().parse_args(["--worker", "m=127.0.0.1:1", option, value])

    assert exit_info.value.code == 2
    assert f"argument {option}: {message}" in capsys.readouterr().err


def test_tokenlabs_cli_registers_engine_sim() -> None:
    from tokenlabs.cli.engine import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["engine", "sim", "--worker", "m=127.0.0.1:0", "--itl-ms", "1"])

    assert (args.command, args.engine, args.itl_ms) == ("engine", "sim", 1.0)
    assert callable(args.func)


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
async def test_process_announces_workers_and_exits_cleanly_on_signal(
    signal_number: signal.Signals, http: aiohttp.ClientSession
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine.sim", "--worker", "a,b=127.0.0.1:0", "--worker", "c=127.0.0.1:0",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines = [(await asyncio.wait_for(process.stdout.readline(), timeout=10)).decode() for _ in range(2)]
        urls = []
        for line, models in zip(lines, ("a,b", "c"), strict=True):
            match = re.fullmatch(rf"sim worker ready model={models} url=(http://127\.0\.0\.1:\d+)\n", line)
            assert match, line
            urls.append(match[1])
        for url in urls:
            async with http.get(url + "/health") as response:
                assert response.status == 200
        process.send_signal(signal_number)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
