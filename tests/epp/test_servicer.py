"""The endpoint picker's ext_proc stream, message by message as Envoy sends them, over the shipped config's pools."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as extproc_pb2
from google.protobuf import struct_pb2

from epp.metrics.snapshot import MetricsBoard
from epp.picking import EndpointPicker
from epp.pools.directory import PoolDirectory
from epp.scheduling.framework import Scheduler
from epp.scheduling.registry import build_profile
from epp.scheduling.scorers.ttft_cost import TtftCostScorer
from epp.servicer import EndpointPickerServicer, served_address, subset_hint
from tests.epp.fakes import FakeClock, endpoint_metrics
from tests.helpers import (
    metric_samples,
    repo_settings,
    request_body,
    request_headers,
    response_body,
    response_headers,
    set_headers,
    stream,
)
from tokenlabs.picker_settings import SaturationMode, SaturationSettings
from tokenlabs.telemetry import Telemetry

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA_POOL = ("127.0.0.1:8101", "127.0.0.1:8102")
VL = "nvidia/NVIDIA-Nemotron-Nano-12B-v2-VL-FP8"
DESTINATION = "x-gateway-destination-endpoint"
HEADERS = {":method": "POST", ":path": "/v1/chat/completions", "x-ai-eg-model": LLAMA}
LONG_PROMPT = "You are a careful assistant. " * 60  # 1740 characters: 27 blocks of 64


@dataclass
class Epp:
    servicer: EndpointPickerServicer
    board: MetricsBoard
    clock: FakeClock
    telemetry: Telemetry

    def publish(self, **waiting_by_port: int) -> None:
        """Fresh metrics with these queues, by port: ``publish(p8101=0, p8102=3)``."""
        for port, waiting in waiting_by_port.items():
            self.board.publish(f"127.0.0.1:{port[1:]}", endpoint_metrics(waiting=waiting, scraped_at=self.clock()))

    async def run(self, *messages: extproc_pb2.ProcessingRequest) -> list[extproc_pb2.ProcessingResponse]:
        return [response async for response in self.servicer.Process(stream(messages), None)]

    def samples(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {
            labels: value
            for (sample, labels), value in metric_samples(self.telemetry.render().decode()).items()
            if sample == name
        }


def make_epp(profile: str = "tokenlabs", mode: SaturationMode = SaturationMode.SHED, seed: int = 0) -> Epp:
    settings = repo_settings()
    epp_settings = replace(settings.epp, saturation=SaturationSettings(mode=mode))
    clock, board, telemetry = FakeClock(), MetricsBoard(), Telemetry.create("epp-test")
    built = build_profile({"profile": profile})
    for weighted in built.scorers:
        if isinstance(weighted.scorer, TtftCostScorer):
            weighted.scorer.clock = clock  # its backlog drains in the test's time
    scheduler = Scheduler(built, epp_settings.fallbacks, random.Random(seed))
    picker = EndpointPicker(PoolDirectory.from_settings(settings), board, scheduler, epp_settings, clock)
    epp = Epp(EndpointPickerServicer(picker, telemetry), board, clock, telemetry)
    epp.publish(p8101=0, p8102=0, p8103=0)
    return epp


def chat(prompt: str) -> bytes:
    return orjson.dumps({"model": LLAMA, "messages": [{"role": "user", "content": prompt}]})


def body_chunk(data: bytes, end_of_stream: bool) -> extproc_pb2.ProcessingRequest:
    return extproc_pb2.ProcessingRequest(request_body=extproc_pb2.HttpBody(body=data, end_of_stream=end_of_stream))


def lb_endpoints(response: extproc_pb2.ProcessingResponse) -> list[str]:
    value: str = response.dynamic_metadata.fields["envoy.lb"].struct_value.fields[DESTINATION].string_value
    return value.split(",")


def with_hint(message: extproc_pb2.ProcessingRequest, hint: Sequence[str] | str) -> extproc_pb2.ProcessingRequest:
    metadata = struct_pb2.Struct()
    metadata.update({"x-gateway-destination-endpoint-subset": hint if isinstance(hint, str) else list(hint)})
    message.metadata_context.filter_metadata["envoy.lb.subset_hint"].CopyFrom(metadata)
    return message


def served_by(address: str) -> extproc_pb2.ProcessingRequest:
    message = response_headers({":status": "200"})
    message.attributes["envoy.filters.http.ext_proc"].update({"upstream.address": address})
    return message


def error_of(response: extproc_pb2.ProcessingResponse) -> tuple[int, str, dict[str, str]]:
    immediate = response.immediate_response
    headers = {option.header.key: option.header.raw_value.decode() for option in immediate.headers.set_headers}
    return immediate.status.code, orjson.loads(immediate.body)["error"]["code"], headers


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


async def test_picks_on_the_buffered_body_and_overwrites_a_forged_destination() -> None:
    epp = make_epp()
    forged = {**HEADERS, DESTINATION: "169.254.169.254:80"}
    body = chat("Hello there")
    responses = await epp.run(request_headers(forged), body_chunk(body[:10], False), request_body(body[10:]))
    assert [r.WhichOneof("response") for r in responses] == ["request_headers", "request_body", "request_body"]
    assert set_headers(responses[0], "request_headers") == {}  # no pick before the body
    assert set_headers(responses[1], "request_body") == {}  # nor on a chunk that does not end it
    chosen = set_headers(responses[2], "request_body")[DESTINATION]
    assert chosen in LLAMA_POOL  # the client's value is always overwritten
    endpoints = lb_endpoints(responses[2])
    assert endpoints[0] == chosen and sorted(endpoints) == sorted(LLAMA_POOL)  # the pick, then its fallback


async def test_a_request_without_body_is_picked_at_its_headers() -> None:
    epp = make_epp()
    (response,) = await epp.run(request_headers(HEADERS, end_of_stream=True))
    chosen = set_headers(response, "request_headers")[DESTINATION]
    assert chosen in LLAMA_POOL
    assert lb_endpoints(response)[0] == chosen


async def test_another_models_pool() -> None:
    epp = make_epp()
    _, response = await epp.run(request_headers({**HEADERS, "x-ai-eg-model": VL}), request_body(b"{}"))
    assert set_headers(response, "request_body")[DESTINATION] == "127.0.0.1:8103"
    assert lb_endpoints(response) == ["127.0.0.1:8103"]


async def test_a_malformed_body_is_still_picked() -> None:
    epp = make_epp()
    _, response = await epp.run(request_headers(HEADERS), request_body(b"{not json"))
    assert set_headers(response, "request_body")[DESTINATION] in LLAMA_POOL


async def test_an_unknown_model_is_503() -> None:
    epp = make_epp()
    for message in (request_headers({**HEADERS, "x-ai-eg-model": "nope"}, end_of_stream=True),):
        (response,) = await epp.run(message)
        status, code, headers = error_of(response)
        assert (status, code, headers["content-type"]) == (503, "no_pool", "application/json")
    _, response = await epp.run(request_headers({":method": "POST"}), request_body(chat("hi")))  # no model header
    assert error_of(response)[:2] == (503, "no_pool")
    assert epp.samples("tokenlabs_epp_picks_total") == {labels(pool="", endpoint="", reason="no_pool"): 2.0}


async def test_a_saturated_pool_is_shed_with_429_and_retry_after() -> None:
    epp = make_epp(mode=SaturationMode.SHED)
    epp.publish(p8101=5, p8102=9)
    _, response = await epp.run(request_headers(HEADERS), request_body(chat("hi")))
    status, code, headers = error_of(response)
    assert (status, code, headers["retry-after"]) == (429, "pool_saturated", "1")


async def test_stale_metrics_are_503() -> None:
    epp = make_epp()
    epp.clock.advance(60.0)
    (response,) = await epp.run(request_headers(HEADERS, end_of_stream=True))
    assert error_of(response)[:2] == (503, "no_healthy_endpoint")


@pytest.mark.parametrize("hint", [["127.0.0.1:8102"], "127.0.0.1:8102", " 127.0.0.1:8102 , 10.9.9.9:80 "])
async def test_the_subset_hint_restricts_the_pick(hint: list[str] | str) -> None:
    epp = make_epp()
    epp.publish(p8101=0, p8102=4)  # 8101 would be the better pick
    (response,) = await epp.run(with_hint(request_headers(HEADERS, end_of_stream=True), hint))
    assert set_headers(response, "request_headers")[DESTINATION] == "127.0.0.1:8102"
    assert lb_endpoints(response) == ["127.0.0.1:8102"]


async def test_a_subset_hint_outside_the_pool_is_503() -> None:
    epp = make_epp()
    (response,) = await epp.run(with_hint(request_headers(HEADERS, end_of_stream=True), ["10.1.1.1:80"]))
    assert error_of(response)[:2] == (503, "no_healthy_endpoint")


async def test_the_served_endpoint_is_counted_with_fallbacks() -> None:
    epp = make_epp()
    epp.publish(p8101=0, p8102=3)  # every pick goes to 8101
    for served in ("127.0.0.1:8101", "127.0.0.1:8102", "127.0.0.1:8101"):
        responses = await epp.run(request_headers(HEADERS), request_body(chat("a")), served_by(served))
        assert set_headers(responses[1], "request_body")[DESTINATION] == "127.0.0.1:8101"
        assert responses[2].WhichOneof("response") == "response_headers"
    assert epp.samples("tokenlabs_epp_served_total") == {
        labels(pool="llama", endpoint="127.0.0.1:8101", fallback="false"): 2.0,
        labels(pool="llama", endpoint="127.0.0.1:8102", fallback="true"): 1.0,  # Envoy fell back
    }
    assert epp.samples("tokenlabs_epp_picks_total") == {
        labels(pool="llama", endpoint="127.0.0.1:8101", reason="scheduled"): 3.0
    }


async def test_responses_without_upstream_or_without_pick_count_nothing() -> None:
    epp = make_epp()
    responses = await epp.run(
        request_headers(HEADERS, end_of_stream=True), response_headers({":status": "200"}), response_body(b"x")
    )
    assert [r.WhichOneof("response") for r in responses] == ["request_headers", "response_headers", "response_body"]
    local = await epp.run(served_by("127.0.0.1:8101"))  # a local reply: Envoy never asked for a pick
    assert [r.WhichOneof("response") for r in local] == ["response_headers"]
    assert epp.samples("tokenlabs_epp_served_total") == {}


async def test_pick_latency_is_recorded_by_reason() -> None:
    epp = make_epp()
    await epp.run(request_headers(HEADERS, end_of_stream=True))
    await epp.run(request_headers({**HEADERS, "x-ai-eg-model": "nope"}, end_of_stream=True))
    counts = epp.samples("tokenlabs_decision_duration_seconds_count")
    assert counts[labels(server="epp-test", phase="pick", result="scheduled")] == 1.0
    assert counts[labels(server="epp-test", phase="pick", result="refused")] == 1.0


async def pick_for(epp: Epp, prompt: str) -> str:
    _, response = await epp.run(request_headers(HEADERS), request_body(chat(prompt)))
    return set_headers(response, "request_body")[DESTINATION]


@pytest.mark.parametrize("profile", ["gie_default", "tokenlabs"])
async def test_the_same_long_prompt_goes_where_its_prefix_is(profile: str) -> None:
    for seed in range(6):  # the first pick is a coin toss between equal endpoints: try both outcomes
        epp = make_epp(profile, seed=seed)
        prompts = [f"Conversation {index}. {LONG_PROMPT}" for index in range(3)]  # no prefix in common
        first = [await pick_for(epp, prompt) for prompt in prompts]
        # A second later the first requests are prefilled (ttft_cost's backlog drained) and a scrape shows both
        # endpoints equally loaded again.
        epp.clock.advance(1.0)
        epp.publish(p8101=0, p8102=0)
        again = [await pick_for(epp, prompt) for prompt in prompts]
        assert again == first, (profile, seed)


async def test_without_prefix_scoring_the_same_prompt_is_not_kept_together() -> None:
    epp = make_epp("round_robin")
    assert await pick_for(epp, LONG_PROMPT) != await pick_for(epp, LONG_PROMPT)


def test_subset_hint_reading() -> None:
    assert subset_hint(request_headers(HEADERS)) is None
    assert subset_hint(with_hint(request_headers(HEADERS), ["a:1", "", "b:1"])) == {"a:1", "b:1"}
    assert subset_hint(with_hint(request_headers(HEADERS), "a:1,b:1,")) == {"a:1", "b:1"}
    assert subset_hint(with_hint(request_headers(HEADERS), [])) == set()  # a hint naming nothing allows nothing
    other = request_headers(HEADERS)
    other.metadata_context.filter_metadata["envoy.lb.subset_hint"].update({"unrelated": "x"})
    assert subset_hint(other) is None


def test_served_address_reading() -> None:
    assert served_address(response_headers({})) is None
    assert served_address(served_by("10.0.0.1:8000")) == "10.0.0.1:8000"
    assert served_address(served_by("")) is None
    message: Any = response_headers({})
    message.attributes["envoy.filters.http.ext_proc"].update({"other": "x"})
    assert served_address(message) is None


class EmptyPicker:
    """Breaks the picker contract: picks nothing."""

    def pick(self, candidates: Sequence[Any], totals: Sequence[float], count: int, rng: random.Random) -> list[Any]:
        return []


async def test_a_plugin_breaking_its_contract_is_a_503_not_a_broken_stream() -> None:
    settings = repo_settings()
    clock, board = FakeClock(), MetricsBoard()
    profile = replace(build_profile({"profile": "least_request"}), picker=("empty", EmptyPicker()))
    picker = EndpointPicker(
        PoolDirectory.from_settings(settings), board, Scheduler(profile, 2, random.Random(0)), settings.epp, clock
    )
    epp = Epp(EndpointPickerServicer(picker, Telemetry.create("epp-test")), board, clock, Telemetry.create("unused"))
    epp.publish(p8101=0, p8102=0)
    (response,) = await epp.run(request_headers(HEADERS, end_of_stream=True))
    status, code, _ = error_of(response)
    assert (status, code) == (503, "picker_error")
