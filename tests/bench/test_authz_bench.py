"""The authz benchmark's parts: generated tenants and requests, the allow check on raw bytes, the summaries, the
profile summary of a real servicer, and one tiny end-to-end run."""

from __future__ import annotations

import cProfile
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from envoy.service.auth.v3 import external_auth_pb2 as authz_pb2

from authz.secrets import key_digest
from authz.servicer import AuthorizationServicer
from authz.sources.directory import read_directory
from authz.tiers import TierPolicy
from bench.authz_direct import summarise
from bench.authz_load import ALLOW_PREFIX, authz_requests
from bench.authz_profile import GRPC_NATIVE, summarise_profile
from bench.authz_tenants import bench_key, write_tenants
from tests.helpers import REPO
from tokenlabs import envoy_messages
from tokenlabs.errors import InvalidApiKey, http_error
from tokenlabs.quota.memory import MemoryQuotaStore
from tokenlabs.quota.windows import Limit
from tokenlabs.telemetry import Telemetry

TIERS = ("free", "pro", "enterprise")


def test_generated_tenants_load_with_their_keys_and_tiers_in_turn(tmp_path: Path) -> None:
    write_tenants(tmp_path, 7, TIERS)
    snapshot = read_directory(tmp_path, frozenset(TIERS))
    assert len(snapshot) == 7 and not snapshot.rejections
    assert [snapshot.by_digest[key_digest(bench_key(i))].tier for i in range(4)] == [
        "free",
        "pro",
        "enterprise",
        "free",
    ]
    assert len({len(bench_key(i)) for i in (0, 99_999, 99_999_999)}) == 1


def test_requests_carry_a_random_bench_key() -> None:
    make = authz_requests(50)
    keys = set()
    for _ in range(200):
        http = authz_pb2.CheckRequest.FromString(make()).attributes.request.http
        scheme, _, key = http.headers["authorization"].partition(" ")
        assert scheme == "Bearer" and http.path == "/v1/chat/completions"
        keys.add(key)
    assert keys <= {bench_key(i) for i in range(50)} and len(keys) > 30


def test_only_an_allow_passes_the_byte_check() -> None:
    allow = envoy_messages.authz_allow((("x-tenant-id", "t"),), ("authorization",), (), {"tenant_id": "t"})
    deny = envoy_messages.authz_deny(http_error(InvalidApiKey("no")))
    assert allow.SerializeToString().startswith(ALLOW_PREFIX)
    assert not deny.SerializeToString().startswith(ALLOW_PREFIX)


def test_direct_summary_takes_medians_and_per_round_ratios() -> None:
    def run(round_: int, method: str, calls_per_s: float) -> dict[str, Any]:
        numbers = dict.fromkeys(("p50_ms", "p90_ms", "p99_ms", "server_cores", "server_main_thread_cores"), 1.0)
        numbers |= {"client_cpu_us_per_call": 1.0, "machine_idle_percent": 0.0, "server_cpu_us_per_call": 100.0}
        return {"round": round_, "method": method, "concurrency": 8, "calls_per_s": calls_per_s, "errors": 0, **numbers}

    results = [run(1, "authz", 500), run(1, "health", 1000), run(2, "authz", 900), run(2, "health", 1000)]
    results.append(run(3, "authz", 3000) | {"errors": 2})
    summary = summarise(results, (8,))
    assert summary["authz"]["c8"]["calls_per_s"] == 900 and summary["authz"]["c8"]["errors"] == 2
    assert summary["authz_vs_health"]["c8"]["calls_per_s"] == {"median": 0.7, "min": 0.5, "max": 0.9}


async def test_profile_summary_of_real_checks_counts_them_and_finds_our_code(tmp_path: Path) -> None:
    write_tenants(tmp_path, 20, TIERS)
    snapshot = read_directory(tmp_path, frozenset(TIERS))
    policies = MappingProxyType({tier: TierPolicy(tier, (Limit("minute", 60, 10**12),), None) for tier in TIERS})
    servicer = AuthorizationServicer(lambda: snapshot, policies, MemoryQuotaStore(), Telemetry.create("authz"), 1 << 20)
    make = authz_requests(20)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(50):
        response = await servicer.Check(authz_pb2.CheckRequest.FromString(make()), None)
        assert response.HasField("ok_response")
    profiler.disable()
    profiler.dump_stats(tmp_path / "stats")
    profile = summarise_profile(tmp_path / "stats")
    assert profile["checks"] == 50
    categories = {item["category"] for item in profile["categories"]}
    assert "authz: servicer, policy, snapshot" in categories and GRPC_NATIVE not in categories
    assert profile["ours_cumulative"][0]["function"].startswith("authz/servicer.py")


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install -y wrk)")
def test_quick_run_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "authz.json"
    argv = ["--quick", "--tenants", "1000", "--json", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "bench.authz", *argv], cwd=REPO, capture_output=True, text=True, timeout=110
    )
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(out.read_text())
    assert document["tenants"]["count"] == 1000 and document["tenants"]["rss_bytes_per_tenant"] > 0
    for method in ("authz", "health"):
        assert set(document["direct"][method]) == {"c1", "c8", "c64"}
        assert all(n["calls_per_s"] > 0 and n["errors"] == 0 for n in document["direct"][method].values())
    assert document["envoy"]["authz_only"]["rps"] > 0
    assert document["envoy"]["authz_only"]["envoy_calls_per_request"]["ext_authz.ok"] == pytest.approx(1.0, abs=0.02)
    assert document["envoy"]["authz_only_vs_plain"]["rps_c16"]["median"] > 0
    assert document["profile"]["checks"] > 0 and document["profile"]["top_self"]
    assert set(document["targets"]) == {"checks_per_s", "p99_ms", "envoy_rps_ratio"}
    assert len(document["rounds"]["direct"]) == 6 and len(document["rounds"]["envoy"]) == 4
    assert "Where the time goes" in result.stdout
