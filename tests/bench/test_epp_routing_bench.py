"""The routing benchmark's parts: the workload, the summaries, one tiny real run per policy, the decision timer."""

from __future__ import annotations

from pathlib import Path

from bench.epp_decision import decision_latency
from bench.epp_driver import Outcome, run_load
from bench.epp_pool import HITS_AND_QUERIES, SimPool
from bench.epp_routing import percentile, plot, reference_rate, report, summarise
from bench.epp_workload import Workload, WorkloadShape

SMALL = WorkloadShape(groups=3, questions_per_group=2, system_prompt_words=80, question_words=5, max_tokens=3)


def test_arrivals_are_reproducible_and_share_system_prompts_within_a_group() -> None:
    workload = Workload.build(SMALL)
    first, again = workload.arrivals(20.0, 2.0, seed=1), workload.arrivals(20.0, 2.0, seed=1)
    assert first == again and 20 <= len(first) <= 60  # Poisson: 40 expected in 2 s
    assert all(0 < a.at_s < 2.0 for a in first)
    by_group = {a.group: a.messages[0]["content"] for a in first}
    assert all(arrival.messages[0]["content"] == by_group[arrival.group] for arrival in first)


def test_zipf_skew_makes_the_first_group_the_most_requested() -> None:
    workload = Workload.build(WorkloadShape(groups=8, zipf_s=1.2, system_prompt_words=5))
    groups = [a.group for a in workload.arrivals(200.0, 5.0, seed=3)]
    assert groups.count(0) > groups.count(7) * 3


def test_summaries_and_the_reference_rate() -> None:
    outcomes = [Outcome(0.0, 0.1 * i, 0.2 * i, 4, 0.0001, "a") for i in range(1, 11)]
    outcomes.append(Outcome(0.0, None, None, 0, 0.0, "a"))
    row = summarise(outcomes, seconds=2.0, hits=30.0, queries=60.0)
    assert row["failed"] == 1 and row["output_tokens_per_s"] == 20.0 and row["prefix_hit_rate"] == 0.5
    assert row["ttft_p90_s"] == percentile([0.1 * i for i in range(1, 11)], 0.9)
    slow = {"round_robin": {"rate": 8.0, "ttft_p90_s": 1.5}}
    fast = {"round_robin": {"rate": 4.0, "ttft_p90_s": 0.5}}
    assert reference_rate([fast, slow]) is slow
    assert reference_rate([fast]) is fast  # never passes 1 s: the highest rate


async def test_one_tiny_run_per_policy_and_the_report(tmp_path: Path) -> None:
    workload = Workload.build(SMALL)
    arrivals = workload.arrivals(10.0, 0.6, seed=2)
    pool = SimPool.launch(2, {"ttft_per_prompt_token_ms": 0.01, "itl_ms": 1})
    try:
        await pool.wait_healthy()
        results = {}
        for policy in ("round_robin", "least_request", "gie_default", "tokenlabs"):
            outcomes = await run_load(policy, pool.endpoints, arrivals, scrape_interval_s=0.02, timeout_s=10.0)
            assert all(o.ttft_s is not None and o.output_tokens == 3 for o in outcomes), outcomes
            results[policy] = {"rate": 10.0, **summarise(outcomes, 0.6, 1.0, 2.0)}
        counters = await pool.counters(HITS_AND_QUERIES)
        assert counters[HITS_AND_QUERIES[1]] > 0  # the workers counted prefix-cache lookups
    finally:
        pool.stop()
    assert pool.process.poll() is not None
    plot([results], list(results), tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000
    decision = {"10": {"tokenlabs": {"p50_ms": 0.1, "p99_ms": 0.2, "decisions": 5}}}
    result = {
        "machine": {"nproc": 2, "cpu_model": "cpu", "loadavg_at_start": "0 0 0"},
        "conditions": {"endpoints": 2},
        "reference_rate": 10.0,
        "by_rate": [results],
        "ratios_at_reference": {
            "round_robin_over_tokenlabs_ttft_p90": 1.0,
            "gie_default_over_tokenlabs_ttft_p90": None,
        },
        "decision_latency": decision,
    }
    text = report(result)
    assert "tokenlabs" in text and "gie_default / tokenlabs = -x" in text


async def test_decision_latency_times_each_pick() -> None:
    timings = await decision_latency("tokenlabs", 10, Workload.build(SMALL), decisions=20)
    assert len(timings) == 20 and all(0 < t < 1.0 for t in timings)
