"""The gateway benchmark's parts: stage configs Envoy accepts, wrk and /proc parsing, and one tiny end-to-end run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench import cpu, wrk
from bench.report import Measurement, summarise
from bench.stack_config import write_config
from bench.stages import PARTIAL_STAGES, partial_bootstrap, plain_bootstrap
from tests.helpers import REPO
from tokenlabs.envoy_config import find_envoy, render_bootstrap
from tokenlabs.picker_settings import Endpoint
from tokenlabs.settings import load


def validate(bootstrap: dict[str, object], path: Path) -> None:
    path.write_text(yaml.safe_dump(bootstrap))
    result = subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(path), "--disable-hot-restart", "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def filter_names(bootstrap: dict[str, object]) -> list[str]:
    manager = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]  # type: ignore[index]
    return [f["name"] for f in manager["http_filters"]]


def test_every_stage_config_is_valid_for_envoy(tmp_path: Path) -> None:
    settings = load(write_config(tmp_path), environ={})
    full = yaml.safe_load(render_bootstrap(settings))
    validate(plain_bootstrap(18080, 19901, Endpoint("127.0.0.1", 18101)), tmp_path / "plain.yaml")
    for name, spec in PARTIAL_STAGES.items():
        bootstrap = partial_bootstrap(full, spec, 18080, 19901, settings)
        assert filter_names(bootstrap) == [*spec.filters, "envoy.filters.http.router"]
        clusters = {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}
        assert clusters["pool_llama"]["type"] == "STATIC", "no stage but full_chain goes through the picker"
        validate(bootstrap, tmp_path / f"{name}.yaml")


def test_wrk_result_line_is_parsed() -> None:
    line = (
        '{"requests": 3000, "duration_us": 1500000, "p50_us": 1200, "p90_us": 2000, "p99_us": 4100, "max_us": 9000, '
        '"non_2xx": 2, "connect_errors": 0, "read_errors": 1, "write_errors": 0, "timeouts": 0}'
    )
    result = wrk.parse(line)
    assert result.rps == 2000 and result.p50_ms == 1.2 and result.p99_ms == 4.1
    assert (result.non_2xx, result.socket_errors, result.errors) == (2, 1, 3)


def test_cpu_shares_add_up_to_the_whole_machine() -> None:
    before = cpu.Snapshot({"envoy": 100, "bench": 5}, busy=1000, total=2000)
    after = cpu.Snapshot({"envoy": 150, "bench": 5}, busy=1150, total=2200)
    shares = cpu.shares(before, after)
    assert shares == {"envoy": 25.0, "bench": 0.0, "other": 50.0, "idle": 25.0}
    assert cpu.snapshot({}, own="bench").ticks["bench"] > 0


def test_summary_takes_medians_and_ratios_against_plain_envoy() -> None:
    def run(stage: str, connections: int, requests: int) -> Measurement:
        result = wrk.WrkResult(requests, 1.0, 1.0, 2.0, 3.0, 4.0, 0, 0)
        return Measurement(1, stage, connections, result, {"envoy": 50.0, "idle": 50.0})

    runs = [run("plain_envoy", 16, n) for n in (900, 1000, 5000)] + [run("full_chain", 16, 250)]
    runs += [run(stage, 1, 100) for stage in ("plain_envoy", "full_chain")]
    summary = summarise(runs, ["plain_envoy", "full_chain"], {})
    assert summary["plain_envoy"]["rps"] == 1000
    assert summary["full_chain"]["vs_plain"]["rps"] == 0.25
    assert summary["full_chain"]["rps_c1"] == 100


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install -y wrk)")
def test_quick_run_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "gateway.json"
    argv = ["--stages", "plain_envoy,full_chain", "--rounds", "1", "--duration", "2", "--json", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "bench.gateway", *argv], cwd=REPO, capture_output=True, text=True, timeout=110
    )
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(out.read_text())
    assert document["full_chain"]["rps"] > 0 and document["full_chain"]["errors"] == 0
    # A ratio of Envoy's counters: wrk abandons the requests in flight when each run ends (up to 16 + 1 here), and
    # those are counted as requests without reaching ext_authz; in a one-second quick run that is a few percent.
    assert document["full_chain"]["envoy_calls_per_request"]["ext_authz.ok"] == pytest.approx(1.0, abs=0.05)
    assert len(document["rounds"]) == 4
