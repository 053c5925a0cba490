"""``tokenlabs engine bench``: the CLI end to end on the tiny model, the prompts file format, the near-tie rule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from engine.spec.bench_lossless import find_divergence, first_difference, judge, reference_logits_at, ulp
from engine.spec.bench_modes import GREEDY, ModeSetup
from engine.spec.bench_prompts import COPY, FILE, PromptFileError, builtin_prompts, load_prompts, parse_lines
from engine.spec.greedy import greedy_generate
from engine.spec.heads import FORMAT_VERSION, HeadMetadata, identity_head, save_head
from engine.spec.modes import build_mode, mode_names
from engine.spec.runner import Runner
from tokenlabs.cli import main

PROMPTS = [
    {"messages": [{"role": "user", "content": "def add(a, b):\n    return a + b\n"}], "id": 1},
    {"prompt": "import os\nimport sys\nimport os\nimport", "set": "raw"},
]
KEYS = {"dtype", "threads", "model", "baseline_tok_s", "modes", "k", "gate", "machine"}
MODE_KEYS = {"tok_s", "speedup", "acceptance_rate", "mean_accepted_len", "identical", "lossless", "by_set"}


def test_cli_writes_the_report_and_lookup_is_identical_in_fp32(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS), encoding="utf-8")
    out = tmp_path / "out" / "bench.json"
    argv = ["engine", "bench", "--model", "tiny", "--model-dir", str(tiny_dir), "--prompts", str(prompts)]
    argv += ["--max-new-tokens", "8", "--repeats", "1", "--dtype", "fp32", "--threads", "1", "--json", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report.keys() >= KEYS
    assert (report["dtype"], report["threads"], report["k"]) == ("fp32", 1, None)
    assert report["gate"] == {"kind": "entropy", "threshold": 1.0}
    assert list(report["modes"]) == ["greedy", "lookup"]
    for entry in report["modes"].values():
        assert entry.keys() >= MODE_KEYS
        assert set(entry["by_set"]) == {FILE, "raw"}
    lookup = report["modes"]["lookup"]
    assert (lookup["identical"], lookup["lossless"], lookup["identical_prompts"]) == (True, True, 2)
    assert report["baseline_tok_s"] > 0 and lookup["speedup"] > 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("lookup     all")


def test_cli_early_exit_reports_its_k_gate_and_draft_length(
    tiny_dir: Path, runner: Runner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    head = tmp_path / "head"
    metadata = HeadMetadata(FORMAT_VERSION, "x", 2, "identity", 512, runner.config.hidden_size, 0, 0, 0, None)
    save_head(head, identity_head(runner.config.hidden_size, torch.arange(512), 2), metadata)
    out = tmp_path / "bench.json"
    argv = ["engine", "bench", "--model", "tiny", "--model-dir", str(tiny_dir), "--modes", "early_exit,hybrid"]
    argv += ["--max-new-tokens", "8", "--repeats", "1", "--dtype", "fp32", "--threads", "1", "--json", str(out)]
    argv += ["--head", str(head), "--gate", "one_minus_pmax:inf", "--draft-len", "3"]
    assert main(argv) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert (report["k"], report["gate"], report["draft_len"]) == (
        2,
        {"kind": "one_minus_pmax", "threshold": math.inf},
        3,
    )
    assert list(report["modes"]) == ["greedy", "early_exit", "hybrid"]
    assert report["modes"]["early_exit"]["identical"]
    assert "early exit K=2, gate one_minus_pmax <= inf, draft_len 3" in capsys.readouterr().out


@pytest.mark.parametrize("gate", ["nonsense", "entropy:-1", "entropy:many"])
def test_cli_rejects_a_bad_gate(tiny_dir: Path, tmp_path: Path, gate: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["engine", "bench", "--model", "tiny", "--model-dir", str(tiny_dir), "--gate", gate]
    assert main([*argv, "--json", str(tmp_path / "out.json")]) == 2
    assert "--gate" in capsys.readouterr().err


def test_cli_rejects_a_bad_prompts_file_naming_the_line(tiny_dir: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "bad.jsonl"
    prompts.write_text('{"prompt": "ok"}\n\n{"text": "no"}\n', encoding="utf-8")
    argv = ["engine", "bench", "--model-dir", str(tiny_dir), "--prompts", str(prompts), "--json", str(tmp_path / "o")]
    with pytest.raises(PromptFileError, match=r"bad.jsonl:3: expected exactly one of 'messages' and 'prompt'"):
        load_prompts(prompts)
    assert main(argv) == 2
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", r"<prompts>:2: not valid JSON"),
        ("[1, 2]", r"<prompts>:2: expected a JSON object, got list"),
        ('{"prompt": "a", "messages": []}', "exactly one of"),
        ('{"prompt": 3}', "'prompt' must be a non-empty string"),
        ('{"messages": []}', "'messages' must be a non-empty list"),
        ('{"messages": [{"role": "user"}]}', r"messages\[0\] needs string 'role' and 'content'"),
        ('{"prompt": "a", "set": 1}', "'set' must be a non-empty string"),
    ],
)
def test_bad_lines_are_named(line: str, message: str) -> None:
    with pytest.raises(PromptFileError, match=message):
        parse_lines(['{"prompt": "fine", "extra": [1]}', line])


def test_empty_file_and_builtin_sets(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(PromptFileError, match="no prompts"):
        load_prompts(empty)
    builtin = builtin_prompts()
    assert [p.set_name for p in builtin].count(COPY) == 12 and len(builtin) == 24


def test_modes_table() -> None:
    assert mode_names() == [GREEDY, "lookup", "early_exit", "hybrid"]
    with pytest.raises(KeyError, match="unknown mode"):
        build_mode("nope", ModeSetup(runner=None))  # type: ignore[arg-type]


def test_first_difference() -> None:
    assert first_difference([1, 2, 3], [1, 2, 3]) is None
    assert first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert first_difference([1, 2, 3], [1, 2]) == 2


def test_ulp_is_the_dtype_spacing_at_the_magnitude() -> None:
    assert ulp(20.0, torch.bfloat16) == 0.125  # [16, 32) in bf16: 2**4 * 2**-7
    assert ulp(-3.0, torch.bfloat16) == 2.0**-6
    assert ulp(20.0, torch.float32) == 16 * 2.0**-23


def test_near_tie_rule_on_constructed_logits() -> None:
    logits = torch.tensor([20.0, 19.75, 19.0, 5.0], dtype=torch.bfloat16)
    tie = judge(logits, 7, reference_token=0, token=1, dtype=torch.bfloat16, tie_ulps=4.0)
    assert (tie.top2_gap, tie.chosen_gap, tie.bound, tie.near_tie) == (0.25, 0.25, 0.5, True)
    # A flip to the third token crossed a 1.0 gap: not a near-tie, though the top-2 gap is small.
    third = judge(logits, 7, reference_token=0, token=2, dtype=torch.bfloat16, tie_ulps=4.0)
    assert (third.top2_gap, third.chosen_gap, third.near_tie) == (0.25, 1.0, False)
    # The same gap is a near-tie with a looser bound, and in fp32 nothing but an exact tie is.
    assert judge(logits, 7, 0, 2, torch.bfloat16, tie_ulps=8.0).near_tie
    assert not judge(logits.float(), 7, 0, 1, torch.float32, tie_ulps=4.0).near_tie
    exact = torch.tensor([1.0, 1.0, 0.0])
    assert judge(exact, 0, 0, 1, torch.float32, 4.0).near_tie
    ended = judge(logits, 3, 0, None, torch.bfloat16, 4.0)
    assert (ended.chosen_gap, ended.near_tie, ended.to_json()["chosen_gap"]) == (math.inf, False, None)


def test_divergence_uses_the_greedy_loops_own_logits(runner: Runner) -> None:
    prompt = [11, 400, 23, 1800, 5, 64, 64, 901]
    reference = greedy_generate(runner, prompt, 12)
    assert find_divergence(runner, prompt, reference, reference, 4.0) is None
    for index in (0, 5):
        logits = reference_logits_at(runner, prompt, reference, index)
        assert int(logits.argmax()) == reference[index]
        runner_up = int(torch.topk(logits, 2).indices[1])
        output = [*reference[:index], runner_up]
        divergence = find_divergence(runner, prompt, reference, output, 4.0)
        assert divergence is not None
        assert (divergence.index, divergence.reference_token, divergence.token) == (index, reference[index], runner_up)
        assert (
            divergence.chosen_gap
            == divergence.top2_gap
            == pytest.approx(float(logits[reference[index]] - logits[runner_up]))
        )
