"""The endpoint picker's ext_proc stream (Gateway API Inference Extension endpoint picker protocol).

Phases (Envoy sends request headers, then the buffered body, then response headers):

- request headers: remember the model (``x-ai-eg-model``, set by extproc) and the subset hint (filter metadata
  ``envoy.lb.subset_hint``); pick here only when the request has no body.
- request body (end of stream): pick from the model's pool with the prompt (``EndpointPicker.choose``) and answer
  with the header ``x-gateway-destination-endpoint`` (always overwritten: a client-sent value would be an SSRF
  hole) and dynamic metadata ``envoy.lb`` carrying the same value, fallbacks comma-separated. A refusal is an
  immediate OpenAI-format error: 503 (no endpoint fits) or 429 with retry-after (shed).
- response headers: Envoy reports the upstream it used (attribute ``upstream.address``); a mismatch with the pick
  means Envoy fell back, which is counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from envoy.service.ext_proc.v3 import external_processor_pb2 as extproc_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as extproc_grpc

from epp.picking import EndpointPicker, Pick
from epp.request import scheduling_request
from tokenlabs import envoy_messages, headers
from tokenlabs.envoy_messages import read_headers
from tokenlabs.errors import RequestError, Unavailable, http_error
from tokenlabs.telemetry import Telemetry

log = logging.getLogger(__name__)

SERVICE_NAME = envoy_messages.EXT_PROC_SERVICE
LB_NAMESPACE = "envoy.lb"
SUBSET_NAMESPACE = "envoy.lb.subset_hint"
SUBSET_KEY = "x-gateway-destination-endpoint-subset"
ATTRIBUTES_NAMESPACE = "envoy.filters.http.ext_proc"
UPSTREAM_ADDRESS = "upstream.address"


def subset_hint(message: extproc_pb2.ProcessingRequest) -> set[str] | None:
    hint = message.metadata_context.filter_metadata.get(SUBSET_NAMESPACE)
    if hint is None or SUBSET_KEY not in hint.fields:
        return None
    value = hint.fields[SUBSET_KEY]
    if value.HasField("list_value"):
        return {item.string_value for item in value.list_value.values if item.string_value}
    return {part.strip() for part in value.string_value.split(",") if part.strip()}


def served_address(message: extproc_pb2.ProcessingRequest) -> str | None:
    attributes = message.attributes.get(ATTRIBUTES_NAMESPACE)
    if attributes is None or UPSTREAM_ADDRESS not in attributes.fields:
        return None
    return attributes.fields[UPSTREAM_ADDRESS].string_value or None


class EndpointPickerServicer(extproc_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    def __init__(self, picker: EndpointPicker, telemetry: Telemetry) -> None:
        self._picker = picker
        self._telemetry = telemetry
        self._picks = telemetry.counter(
            "tokenlabs_epp_picks", "Endpoint picks by pool, endpoint and reason.", ("pool", "endpoint", "reason")
        )
        self._served = telemetry.counter(
            "tokenlabs_epp_served",
            "Responses by the endpoint Envoy used; fallback=true when it was not the pick.",
            ("pool", "endpoint", "fallback"),
        )

    async def Process(
        self, request_iterator: AsyncIterator[extproc_pb2.ProcessingRequest], context: Any
    ) -> AsyncIterator[extproc_pb2.ProcessingResponse]:
        model = ""
        hint: set[str] | None = None
        body: list[bytes] = []
        pick: Pick | None = None
        async for message in request_iterator:
            kind = message.WhichOneof("request")
            if kind == "request_headers":
                model = read_headers(message.request_headers.headers).get(headers.MODEL, "")
                hint = subset_hint(message)
                if message.request_headers.end_of_stream:
                    response, pick = await self._pick(model, b"", hint, envoy_messages.continue_request_headers)
                    yield response
                else:
                    yield envoy_messages.continue_request_headers()
            elif kind == "request_body":
                body.append(message.request_body.body)
                if message.request_body.end_of_stream:
                    response, pick = await self._pick(model, b"".join(body), hint, envoy_messages.continue_request_body)
                    body.clear()
                    yield response
                else:
                    yield envoy_messages.continue_request_body()
            elif kind == "response_headers":
                if pick is not None:
                    self._count_served(pick, served_address(message))
                yield envoy_messages.continue_response_headers()
            elif kind == "response_body":
                yield envoy_messages.continue_response_body()

    async def _pick(
        self, model: str, body: bytes, hint: set[str] | None, respond: Any
    ) -> tuple[extproc_pb2.ProcessingResponse, Pick | None]:
        started = time.perf_counter()
        try:
            pick = await self._picker.choose(scheduling_request(model, body), hint)
        except RequestError as error:
            code = error.code or type(error).__name__
            self._picks.add(("", "", code))
            self._telemetry.record_decision("pick", "refused", time.perf_counter() - started)
            log.info("no endpoint", extra={"model": model, "reason": error.message, "code": code})
            return envoy_messages.immediate_error(http_error(error)), None
        except Exception:
            # A plugin broke its contract: this request gets a clear 503, the stream and the server carry on.
            log.exception("scheduling failed", extra={"model": model})
            self._picks.add(("", "", "picker_error"))
            self._telemetry.record_decision("pick", "error", time.perf_counter() - started)
            failure = Unavailable("The endpoint picker failed to schedule this request.", code="picker_error")
            return envoy_messages.immediate_error(http_error(failure)), None
        ranked = ",".join(pick.decision.addresses)
        chosen = pick.decision.chosen.address
        self._picks.add((pick.pool.name, chosen, pick.reason))
        self._telemetry.record_decision("pick", pick.reason, time.perf_counter() - started)
        response = respond(set_headers=((headers.DESTINATION_ENDPOINT, chosen),))
        response.dynamic_metadata.CopyFrom(
            envoy_messages.metadata(LB_NAMESPACE, {headers.DESTINATION_ENDPOINT: ranked})
        )
        return response, pick

    def _count_served(self, pick: Pick, served: str | None) -> None:
        if served is None:
            return
        fallback = "false" if served == pick.decision.chosen.address else "true"
        self._served.add((pick.pool.name, served, fallback))
