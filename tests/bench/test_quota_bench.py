"""The quota benchmark's parts: reading streams as a client, percentiles and the overhead summary, the exactness
requests and verdict, the counters' parsers, the two-replica bootstrap Envoy accepts, and one quick run."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest
import yaml

from bench.envoy_rounds import rotated
from bench.quota_counters import Counter, headroom_wait, host_requests_of, worker_tokens_of
from bench.quota_exact import Observed, exact_requests, verdict
from bench.quota_report import StreamRun, overhead, percentile, stream_run
from bench.quota_stack import (
    EXTPROC_CLUSTER,
    STREAM_TOKENS,
    TOKENS_PER_MINUTE,
    LogWatch,
    config_document,
    with_extproc_replica,
)
from bench.quota_stream import StreamRecord, Usage, peak_overlap, stream_problems
from bench.stack_config import write_document
from engine.sim.request_parsing import parse_chat_completion
from engine.sim.tokens import chat_prompt_tokens
from extproc.quota import reservation
from tests.bench.test_gateway_bench import validate
from tests.helpers import REPO
from tests.redis_server import redis_server_path
from tokenlabs.envoy_config import render_bootstrap
from tokenlabs.server_settings import ServerSettings
from tokenlabs.settings import LimitSettings, load


def sse(event: object) -> bytes:
    return b"data: " + (event if isinstance(event, bytes) else orjson.dumps(event))


def content(text: str) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def streamed(tokens: int, usage: bool = False, started: float = 0.0, ttft: float = 0.02) -> StreamRecord:
    """A 200 stream as the simulator sends it, the first token at ``started + ttft`` and then one every 10 ms."""
    record = StreamRecord(started=started, status=200)
    lines = [sse({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})]
    lines += [sse(content(f" w{i}")) for i in range(tokens)]
    lines.append(sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    if usage:
        lines.append(
            sse({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": tokens, "total_tokens": 9 + tokens}})
        )
    lines.append(sse(b"[DONE]"))
    at = started + ttft
    for line in lines:
        record.feed(line + b"\n", at)
        record.feed(b"\n", at)
        if line.startswith(b'data: {"choices":[{"index":0,"delta":{"content"'):
            at += 0.01
    record.ended = at
    return record


def test_a_whole_stream_gives_its_ttft_and_chunk_delays() -> None:
    record = streamed(4, started=1.0)
    assert record.ttft_s == pytest.approx(0.02)
    assert record.gaps_s == pytest.approx([0.01, 0.01, 0.01])
    assert record.finish_reason == "stop" and record.done and record.usage is None
    assert stream_problems(record, 4, usage_asked=False) == []


def test_stream_problems_name_what_is_missing_or_extra() -> None:
    asked = streamed(3, usage=True)
    assert asked.usage == Usage(9, 3, 12)
    assert stream_problems(asked, 3, usage_asked=True) == []
    assert stream_problems(asked, 3, usage_asked=False) == ["a usage chunk the client did not ask for"]
    cut = StreamRecord(started=0.0, status=200)
    cut.feed(sse(content("x")), 0.1)
    assert stream_problems(cut, 2, usage_asked=True) == [
        "1 content chunks, expected 2",
        "no finish_reason",
        "[DONE] missing or not last",
        "0 usage chunks, asked for one",
    ]
    late = streamed(1)
    late.feed(sse(content("y")), 1.0)
    assert "[DONE] missing or not last" in stream_problems(late, 2, usage_asked=False)


def test_percentile_interpolates_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.5
    assert percentile(values, 0.99) == pytest.approx(99.01)
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([], 0.5) != percentile([], 0.5)  # NaN


def test_peak_overlap_counts_intervals_open_at_once() -> None:
    assert peak_overlap([(0, 2), (1, 3), (2, 4)]) == 2  # one ending as another starts is not overlapping
    assert peak_overlap([(0, 10)] * 5) == 5
    assert peak_overlap([]) == 0


def test_a_run_leaves_broken_streams_out_of_its_percentiles() -> None:
    records = [streamed(STREAM_TOKENS, ttft=0.02), streamed(STREAM_TOKENS, ttft=0.04), streamed(3)]
    records.append(StreamRecord(started=0.0, status=503))
    run = stream_run(1, "full_chain", 16, records, STREAM_TOKENS, {"other": 1.0})
    assert (run.requests, run.broken) == (4, 2)
    assert run.ttft_p50_ms == pytest.approx(30.0) and run.chunk_p50_ms == pytest.approx(10.0)
    assert run.chunk_delays == 2 * (STREAM_TOKENS - 1)
    assert run.problems[1].startswith("status 503")


def run_of(target: str, number: int, ttft: float) -> StreamRun:
    return StreamRun(number, target, 1, 10, 630, ttft, 2 * ttft, 10.0, 12.0, 0, (), {})


def test_overhead_is_per_round_and_the_median_of_rounds() -> None:
    runs = [run_of("plain_envoy", n, 20.0) for n in (1, 2, 3)]
    runs += [run_of("full_chain", n, ttft) for n, ttft in ((1, 30.0), (2, 24.0), (3, 60.0))]
    result = overhead(runs, [1])["c1"]
    assert [r["ttft_p50_ms"]["diff"] for r in result["rounds"]] == [10.0, 4.0, 40.0]
    assert result["median"]["ttft_p50_ms"] == {"plain": 20.0, "gateway": 30.0, "diff": 10.0, "ratio": 1.5}
    assert result["median"]["chunk_p99_ms"]["ratio"] == 1.0
    assert rotated(["a", "b", "c"], 4) == ["b", "c", "a"]


def test_exactness_requests_would_exceed_the_limit_and_predict_what_the_worker_counts() -> None:
    requests = exact_requests()
    assert len(requests) >= 200 and sum(r.usage_asked for r in requests) == len(requests) // 2
    assert sum(r.total_tokens for r in requests) > TOKENS_PER_MINUTE, "all of them must not fit: some get a 429"
    assert {r.completion_tokens for r in requests} == {8, 16, 24, STREAM_TOKENS}
    # Each reserves at least its charge, so only a fault of admission could carry the counter past the limit.
    limits = LimitSettings(max_request_body_bytes=1 << 20)
    assert all(reservation(orjson.loads(r.body), limits).total >= r.total_tokens for r in requests)
    for request in requests[:8]:
        parsed = parse_chat_completion(orjson.loads(request.body))
        assert len(chat_prompt_tokens(parsed.messages)) == request.prompt_tokens
        assert parsed.options.include_usage is request.usage_asked and parsed.options.stream


def observed(records: Sequence[StreamRecord], stored: int, reported: int, samples: Sequence[int]) -> Observed:
    return Observed(
        records=list(records),
        window=7,
        window_after=7,
        minute=stored,
        day=stored,
        samples=list(samples),
        workers_prompt=10,
        workers_generation=reported - 10,
        replica_streams={"a": 2, "b": 1},
        failovers=0,
        waited_s=0.0,
        burst_s=1.0,
    )


def test_verdict_holds_only_when_every_total_matches_and_the_limit_held() -> None:
    requests = exact_requests(3)
    first, second = requests[0], requests[1]  # not asked / asked
    records = [streamed(first.completion_tokens), streamed(second.completion_tokens, usage=True)]
    records[1].usage = Usage(second.prompt_tokens, second.completion_tokens, second.total_tokens)
    records.append(StreamRecord(started=0.0, status=429, error_type="tokens"))
    total = first.total_tokens + second.total_tokens
    good = verdict(requests, observed(records, total, total, [0, total + 5]), limit=total + 5)
    assert good["ok"], good["checks"]
    assert (good["admitted"], good["refused_429"], good["tokens_seen_by_client"]) == (2, 1, total)
    bad = verdict(requests, observed(records, total + 1, total, [total + 6]), limit=total + 5)
    assert not bad["checks"]["stored_equals_reported"] and not bad["checks"]["peak_within_limit"]
    records[2] = StreamRecord(started=0.0, status=503, error_type="service_unavailable")
    broken = verdict(requests, observed(records, total, total, [total]), limit=total + 5)
    assert broken["broken"] == ["request 2: status 503 service_unavailable"] and not broken["ok"]


def test_counters_read_only_their_own_window_and_the_run_waits_for_room() -> None:
    assert Counter(5, 100).in_window(5) == 100 and Counter(4, 100).in_window(5) == 0
    assert Counter(None, 0).in_window(5) == 0
    assert headroom_wait(120.0, 10) == 0.0
    assert headroom_wait(175.0, 10) == pytest.approx(5.1)


def test_the_log_watch_keeps_warnings_and_counts_failovers() -> None:
    watch = LogWatch()
    watch('extproc | {"level":"info","msg":"server ready"}')
    watch("envoy | [2026-11-23 15:12:01.501][31017][warning][main] no configured limit")
    watch('authz | {"level":"warning","msg":"quota store unreachable (redis acquire timed out after 0.25s)"}')
    watch("envoy | [2026-11-23 15:12:02.000][31017][error][ext_proc] stream failed")
    assert len(watch.lines) == 2
    assert (watch.failovers(), watch.failovers(since=1)) == (1, 0)


def test_worker_and_envoy_counters_are_parsed() -> None:
    text = (
        "# TYPE vllm:prompt_tokens counter\n"
        'vllm:prompt_tokens_total{model_name="m"} 120.0\n'
        "# TYPE vllm:generation_tokens counter\n"
        'vllm:generation_tokens_total{model_name="m"} 64.0\n'
    )
    tokens = worker_tokens_of(text)
    assert (tokens.prompt, tokens.generation) == (120, 64)
    clusters = (
        "tokenlabs_extproc::default_priority::max_requests::1024\n"
        "tokenlabs_extproc::127.0.0.1:9002::rq_total::12\n"
        "tokenlabs_extproc::127.0.0.1:9012::rq_total::11\n"
        "tokenlabs_epp::127.0.0.1:9003::rq_total::23\n"
    )
    assert host_requests_of(clusters, EXTPROC_CLUSTER) == {"127.0.0.1:9002": 12, "127.0.0.1:9012": 11}


def test_the_two_replica_bootstrap_is_valid_for_envoy(tmp_path: Path) -> None:
    settings = load(write_document(tmp_path / "tokenlabs.yaml", config_document("redis://127.0.0.1:1/0")), environ={})
    assert settings.tiers["free"].tokens_per_minute == TOKENS_PER_MINUTE and not settings.quota_store.is_memory
    replica = ServerSettings("127.0.0.1", 19012, 19013, 1.0)
    bootstrap = with_extproc_replica(yaml.safe_load(render_bootstrap(settings)), replica)
    cluster = next(c for c in bootstrap["static_resources"]["clusters"] if c["name"] == EXTPROC_CLUSTER)
    ports = [
        e["endpoint"]["address"]["socket_address"]["port_value"]
        for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ]
    assert ports == [settings.extproc.grpc_port, 19012]
    validate(bootstrap, tmp_path / "envoy.yaml")


@pytest.mark.integration
@pytest.mark.skipif(redis_server_path() is None, reason="redis-server is not installed (apt-get install redis-server)")
def test_quick_run_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "quota.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.quota", "--quick", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(out.read_text())
    assert set(document["streaming"]) == {"c16", "c1"}
    assert document["streaming"]["c1"]["median"]["ttft_p50_ms"]["diff"] > 0
    assert all(run["broken"] == 0 and run["requests"] > 0 for run in document["rounds"])
    exact = document["exactness"]
    assert exact["ok"] and exact["stored_minute"] == exact["reported_by_workers"] > 0
