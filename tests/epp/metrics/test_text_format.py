"""The picker's Prometheus text reader agrees with prometheus_client's parser on what it reads, and is strict only
about the lines it was asked for."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from engine.sim.config import SimConfig
from engine.sim.metrics import WorkerMetrics
from epp.metrics.text_format import MetricsFormatError, Sample, samples

WAITING = "vllm:num_requests_waiting"

# Lines a vLLM server does not write but the format allows: escapes in label values (\" \\ \n, and an unknown
# escape \t kept as is by both readers), label values holding , = } characters, NaN and ±Inf values, timestamps,
# a trailing comma in the label set, blanks before the labels and around the value, free comments, blank lines,
# Windows line ends.
HAND_WRITTEN = (
    "\n"
    "# a free comment, not HELP or TYPE\n"
    "\n"
    r'vllm:num_requests_waiting{engine="1",model_name="a \"quoted\" name"} 4.0' + "\n"
    r'vllm:num_requests_running{engine="1",model_name="back\\slash and\nnewline"} 2 1712345678901' + "\n"
    r'vllm:kv_cache_usage_perc{engine="1",model_name="tab\tkept"} NaN' + "\n"
    'vllm:prefix_cache_hits_total{engine="1"} +Inf\n'
    "vllm:prefix_cache_queries_total -Inf\n"
    'vllm:num_requests_waiting {model_name="spaced"}   7   \n'
    '\tvllm:num_requests_running{engine="2",} 1\n'
    'vllm:cache_config_info{block_size="16",num_gpu_blocks="2048",extra="a,b=c}d"} 1.0\r\n'
    'vllm:num_requests_waiting{model_name="crlf"} 5\r\n'
    "\n"
)


def sim_body() -> str:
    metrics = WorkerMetrics("meta-llama/Llama-3.1-8B-Instruct", SimConfig(), lambda: 3, lambda: 12, lambda: 0.4375)
    metrics.prompt_tokens.inc(1234)
    metrics.time_to_first_token.observe(0.07)
    metrics.record_success("stop")
    return metrics.render().decode()


def reference(text: str) -> list[Sample]:
    return [
        Sample(sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def same(left: list[Sample], right: list[Sample]) -> bool:
    """Equal samples, NaN equal to NaN."""
    return len(left) == len(right) and all(
        a.name == b.name
        and a.labels == b.labels
        and (a.value == b.value or (math.isnan(a.value) and math.isnan(b.value)))
        for a, b in zip(left, right, strict=True)
    )


def go_float(value: float) -> str:
    """A value as Prometheus writes it: NaN, +Inf, -Inf, else Python's repr."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def escape(value: str) -> str:
    """How the exposition format writes a label value."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def test_agrees_with_prometheus_client_on_a_realistic_vllm_page() -> None:
    text = sim_body() + HAND_WRITTEN
    expected = reference(text)
    names = {sample.name for sample in expected}
    assert {WAITING, "vllm:time_to_first_token_seconds_bucket", "vllm:cache_config_info"} <= names
    assert same(list(samples(text, names)), expected)


def test_hand_written_lines_decode_as_the_format_says() -> None:
    found = list(samples(HAND_WRITTEN, {WAITING, "vllm:num_requests_running", "vllm:cache_config_info"}))
    assert [(sample.labels.get("model_name"), sample.value) for sample in found if sample.name == WAITING] == [
        ('a "quoted" name', 4.0),
        ("spaced", 7.0),
        ("crlf", 5.0),
    ]
    running = [sample for sample in found if sample.name == "vllm:num_requests_running"]
    assert running[0].labels["model_name"] == "back\\slash and\nnewline"
    assert running[0].value == 2.0  # the timestamp is read past, not taken for the value
    assert running[1].labels == {"engine": "2"}
    (config,) = (sample for sample in found if sample.name == "vllm:cache_config_info")
    assert config.labels == {"block_size": "16", "num_gpu_blocks": "2048", "extra": "a,b=c}d"}


def test_special_values() -> None:
    text = "a NaN\nb +Inf\nc -Inf\nd 1e3\ne -0.5\n"
    values = {sample.name: sample.value for sample in samples(text, {"a", "b", "c", "d", "e"})}
    assert math.isnan(values["a"])
    assert values["b"] == math.inf and values["c"] == -math.inf
    assert values["d"] == 1000.0 and values["e"] == -0.5


def test_only_wanted_names_are_returned_in_order() -> None:
    text = "x 1\nvllm:num_requests_waiting_extra 9\nvllm:num_requests_waiting 2\nx 3\n"
    # A name that merely starts like a wanted one is another metric.
    assert list(samples(text, {WAITING, "x"})) == [Sample("x", {}, 1.0), Sample(WAITING, {}, 2.0), Sample("x", {}, 3.0)]
    assert list(samples(text, set())) == []


MALFORMED = [
    WAITING,  # no value
    WAITING + '{model_name="m"}',  # labels, no value
    WAITING + " abc",  # not a number
    WAITING + " 1 2 3",  # value, timestamp, and something else
    WAITING + " 1 yesterday",  # a timestamp that is not a number
    WAITING + '{model_name="m" 1',  # labels never closed
    WAITING + "{model_name=m} 1",  # unquoted label value
    WAITING + '{model_name="m} 1',  # label value never closed
    WAITING + '{model_name="m\\"} 1',  # the only closing quote is escaped
    WAITING + "{model_name} 1",  # label without a value
]


@pytest.mark.parametrize("line", MALFORMED)
def test_a_malformed_wanted_line_raises(line: str) -> None:
    with pytest.raises(MetricsFormatError):
        list(samples(f"ok 1\n{line}\n", {WAITING, "ok"}))


@pytest.mark.parametrize("line", MALFORMED)
def test_a_malformed_unwanted_line_is_skipped(line: str) -> None:
    assert list(samples(f"{line}\nok 1\n", {"ok"})) == [Sample("ok", {}, 1.0)]


label_values = st.text(max_size=24)


@settings(max_examples=300, deadline=None)
@given(label_values, label_values)
def test_label_values_round_trip(model: str, engine: str) -> None:
    # Any text, \r \x85 \u2028 and other line-breaking characters included: only "\n" ends a line.
    text = f'# TYPE {WAITING} gauge\n{WAITING}{{model_name="{escape(model)}",engine="{escape(engine)}"}} 3\n'
    (sample,) = samples(text, {WAITING})
    assert sample.labels == {"model_name": model, "engine": engine}
    assert same([sample], reference(text))


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=0, max_value=2**53))
def test_values_round_trip(value: float, timestamp_ms: int) -> None:
    text = f'{WAITING}{{model_name="m"}} {go_float(value)} {timestamp_ms}\n'
    (sample,) = samples(text, {WAITING})
    assert sample.value == value or (math.isnan(value) and math.isnan(sample.value))
    assert same([sample], reference(text))
