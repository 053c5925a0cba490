import random

import orjson
from envoy.service.ext_proc.v3 import external_processor_pb2 as extproc_pb2
from google.protobuf import struct_pb2

from epp.pools import PoolDirectory
from epp.servicer import EndpointPickerServicer
from tests.helpers import repo_settings, request_headers, response_headers, set_headers, stream
from tokenlabs.telemetry import Telemetry

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA_ENDPOINTS = {"127.0.0.1:8101", "127.0.0.1:8102"}


def picker() -> EndpointPickerServicer:
    return EndpointPickerServicer(
        PoolDirectory.from_settings(repo_settings()), Telemetry.create("epp-test"), random.Random(3)
    )


async def test_pick_sets_header_and_lb_metadata_and_releases_on_response() -> None:
    servicer = picker()
    forged = {":method": "POST", "x-ai-eg-model": LLAMA, "x-gateway-destination-endpoint": "169.254.169.254:80"}
    responses = servicer.Process(stream([request_headers(forged), response_headers({":status": "200"})]), None)
    first = await anext(responses)
    chosen = set_headers(first, "request_headers")["x-gateway-destination-endpoint"]
    assert chosen in LLAMA_ENDPOINTS  # the client's value is always overwritten
    lb = first.dynamic_metadata.fields["envoy.lb"].struct_value.fields["x-gateway-destination-endpoint"].string_value
    assert lb.split(",")[0] == chosen and set(lb.split(",")) == LLAMA_ENDPOINTS
    assert servicer.outstanding.counts == {chosen: 1}
    second = await anext(responses)
    assert second.WhichOneof("response") == "response_headers"
    assert servicer.outstanding.counts == {}


async def test_concurrent_requests_spread_across_the_pool() -> None:
    servicer = picker()
    streams = [servicer.Process(stream([request_headers({"x-ai-eg-model": LLAMA})]), None) for _ in range(4)]
    chosen = [set_headers(await anext(s), "request_headers")["x-gateway-destination-endpoint"] for s in streams]
    assert sorted(chosen.count(endpoint) for endpoint in LLAMA_ENDPOINTS) == [2, 2]


async def test_subset_hint_outside_the_pool_is_503() -> None:
    message = request_headers({"x-ai-eg-model": LLAMA})
    hint = struct_pb2.Struct()
    hint.update({"x-gateway-destination-endpoint-subset": ["10.1.1.1:80"]})
    message.metadata_context.filter_metadata["envoy.lb.subset_hint"].CopyFrom(hint)
    (response,) = [r async for r in picker().Process(stream([message]), None)]
    assert response.immediate_response.status.code == 503
    assert orjson.loads(response.immediate_response.body)["error"]["code"] == "no_healthy_endpoint"


async def test_unknown_model_is_503_and_local_replies_pass() -> None:
    servicer = picker()
    (refused,) = [r async for r in servicer.Process(stream([request_headers({"x-ai-eg-model": "x"})]), None)]
    assert refused.immediate_response.status.code == 503
    local = [r async for r in servicer.Process(stream([response_headers({":status": "401"})]), None)]
    assert [r.WhichOneof("response") for r in local] == ["response_headers"]
    assert isinstance(local[0], extproc_pb2.ProcessingResponse)
