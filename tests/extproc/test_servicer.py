import orjson
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as extproc_pb2
from prometheus_client.parser import text_string_to_metric_families

from extproc.metering import Metering
from extproc.servicer import ExternalProcessorServicer
from tests.helpers import (
    repo_settings,
    request_body,
    request_headers,
    response_body,
    response_headers,
    set_headers,
    stream,
)
from tokenlabs.quota.memory import MemoryQuotaStore
from tokenlabs.telemetry import Telemetry

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
VL = "nvidia/NVIDIA-Nemotron-Nano-12B-v2-VL-FP8"
PRO = {":method": "POST", ":path": "/v1/chat/completions", "x-tenant-id": "acme", "x-tenant-tier": "pro"}


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry.create("extproc-test")


@pytest.fixture
def servicer(telemetry: Telemetry) -> ExternalProcessorServicer:
    return ExternalProcessorServicer(repo_settings(), telemetry, Metering(telemetry), MemoryQuotaStore())


async def run(
    servicer: ExternalProcessorServicer, *messages: extproc_pb2.ProcessingRequest
) -> list[extproc_pb2.ProcessingResponse]:
    return [response async for response in servicer.Process(stream(messages), None)]


def samples(telemetry: Telemetry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(telemetry.render().decode()):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def test_routes_by_model_and_meters_json_usage(servicer: ExternalProcessorServicer, telemetry: Telemetry) -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}
    body = orjson.dumps({"id": "x", "usage": usage})
    responses = await run(
        servicer,
        request_headers(PRO),
        request_body(orjson.dumps({"model": LLAMA, "messages": []})),
        response_headers({":status": "200", "content-type": "application/json"}),
        response_body(body[:7]),
        response_body(body[7:], end_of_stream=True),
    )
    routed = responses[1]
    assert set_headers(routed, "request_body") == {"x-ai-eg-model": LLAMA}
    assert routed.request_body.response.clear_route_cache
    tokens = samples(telemetry, "tokenlabs_tokens_total")
    assert tokens[(("kind", "prompt"), ("model", LLAMA), ("tenant", "acme"))] == 10
    assert tokens[(("kind", "completion"), ("model", LLAMA), ("tenant", "acme"))] == 4
    cost = samples(telemetry, "tokenlabs_cost_usd_total")[(("model", LLAMA), ("tenant", "acme"))]
    assert cost == pytest.approx((10 * 0.10 + 4 * 0.20) / 1e6)
    timed = samples(telemetry, "tokenlabs_decision_duration_seconds_count")
    # One record per side of the exchange, not one per message.
    assert timed == {
        (("phase", "request"), ("result", "routed"), ("server", "extproc-test")): 1.0,
        (("phase", "response"), ("result", "routed"), ("server", "extproc-test")): 1.0,
    }


async def test_sse_usage_is_metered(servicer: ExternalProcessorServicer, telemetry: Telemetry) -> None:
    usage = orjson.dumps({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})
    await run(
        servicer,
        request_headers(PRO),
        request_body(orjson.dumps({"model": LLAMA, "stream": True})),
        response_headers({":status": "200", "content-type": "text/event-stream"}),
        response_body(b'data: {"choices":[{"delta":{"content":"a"}}]}\n\nda'),
        response_body(b"ta: " + usage + b"\n\ndata: [DONE]\n\n", end_of_stream=True),
    )
    tokens = samples(telemetry, "tokenlabs_tokens_total")
    assert tokens[(("kind", "completion"), ("model", LLAMA), ("tenant", "acme"))] == 2


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        (PRO, b"{oops", 400, "invalid_request_error"),
        (PRO, b'{"messages": []}', 400, "invalid_request_error"),
        (PRO, b'{"model": "gpt-unknown"}', 404, "model_not_found"),
        ({**PRO, "x-tenant-tier": "free"}, orjson.dumps({"model": VL}), 403, "model_not_allowed"),
        ({**PRO, ":path": "/v1/embeddings"}, None, 404, "unknown_url"),
        ({**PRO, "x-tenant-id": ""}, None, 401, "invalid_api_key"),
    ],
)
async def test_refusals_are_openai_errors(
    servicer: ExternalProcessorServicer, headers: dict[str, str], body: bytes | None, status: int, code: str
) -> None:
    messages = [request_headers(headers)] + ([request_body(body)] if body is not None else [])
    responses = await run(servicer, *messages)
    answer = responses[-1].immediate_response
    assert answer.status.code == status
    assert orjson.loads(answer.body)["error"]["code"] == code


async def test_models_listing_is_answered_directly_per_tier(servicer: ExternalProcessorServicer) -> None:
    headers = {**PRO, ":method": "GET", ":path": "/v1/models", "x-tenant-tier": "free"}
    (response,) = await run(servicer, request_headers(headers, end_of_stream=True))
    answer = response.immediate_response
    assert answer.status.code == 200
    assert [m["id"] for m in orjson.loads(answer.body)["data"]] == [LLAMA]


async def test_local_replies_pass_through_untouched(servicer: ExternalProcessorServicer, telemetry: Telemetry) -> None:
    responses = await run(
        servicer, response_headers({":status": "401"}), response_body(b'{"error":{}}', end_of_stream=True)
    )
    assert [r.WhichOneof("response") for r in responses] == ["response_headers", "response_body"]
    assert samples(telemetry, "tokenlabs_requests_total") == {}
