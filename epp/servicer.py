"""The endpoint picker's ext_proc stream (Gateway API Inference Extension endpoint picker protocol).

Request headers: read the model (``x-ai-eg-model``, set by extproc), pick an endpoint of its pool, answer with
the header ``x-gateway-destination-endpoint`` (always overwritten: a client-sent value would be an SSRF hole) and
dynamic metadata ``envoy.lb`` carrying the same value, fallbacks comma-separated. A subset hint in filter metadata
``envoy.lb.subset_hint`` restricts the candidates. The request counts as outstanding on its endpoint until its
response headers come back or the stream ends, whichever is first.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from envoy.service.ext_proc.v3 import external_processor_pb2 as extproc_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as extproc_grpc

from epp.picker import OutstandingRequests, eligible, pick
from epp.pools import PoolDirectory
from tokenlabs import envoy_messages, headers
from tokenlabs.envoy_messages import read_headers
from tokenlabs.errors import RequestError, Unavailable, http_error
from tokenlabs.telemetry import Telemetry

log = logging.getLogger(__name__)

SERVICE_NAME = envoy_messages.EXT_PROC_SERVICE
LB_NAMESPACE = "envoy.lb"
SUBSET_NAMESPACE = "envoy.lb.subset_hint"
SUBSET_KEY = "x-gateway-destination-endpoint-subset"


def subset_hint(message: extproc_pb2.ProcessingRequest) -> set[str] | None:
    hint = message.metadata_context.filter_metadata.get(SUBSET_NAMESPACE)
    if hint is None or SUBSET_KEY not in hint.fields:
        return None
    value = hint.fields[SUBSET_KEY]
    if value.HasField("list_value"):
        return {item.string_value for item in value.list_value.values if item.string_value}
    return {part.strip() for part in value.string_value.split(",") if part.strip()}


class EndpointPickerServicer(extproc_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    def __init__(self, pools: PoolDirectory, telemetry: Telemetry, rng: random.Random | None = None) -> None:
        self._pools = pools
        self._telemetry = telemetry
        self._rng = rng or random.Random()
        self._outstanding = OutstandingRequests()
        self._picks = telemetry.counter(
            "tokenlabs_epp_picks", "Endpoint picks by pool, endpoint and result.", ("pool", "endpoint", "result")
        )

    @property
    def outstanding(self) -> OutstandingRequests:
        return self._outstanding

    async def Process(
        self, request_iterator: AsyncIterator[extproc_pb2.ProcessingRequest], context: Any
    ) -> AsyncIterator[extproc_pb2.ProcessingResponse]:
        picked: str | None = None
        try:
            async for message in request_iterator:
                kind = message.WhichOneof("request")
                if kind == "request_headers" and picked is None:
                    response, picked = self._on_request_headers(message)
                    yield response
                    continue
                if kind == "response_headers" and picked is not None:
                    self._outstanding.release(picked)
                    picked = None
                yield self._pass_through(kind)
        finally:
            if picked is not None:
                self._outstanding.release(picked)

    def _on_request_headers(
        self, message: extproc_pb2.ProcessingRequest
    ) -> tuple[extproc_pb2.ProcessingResponse, str | None]:
        started = time.perf_counter()
        model = read_headers(message.request_headers.headers).get(headers.MODEL, "")
        pool = self._pools.for_model(model)
        try:
            if pool is None:
                raise Unavailable(f"No inference pool serves the model '{model}'.", code="no_pool")
            ranked = pick(eligible(pool.endpoints, subset_hint(message)), self._outstanding.counts, self._rng)
        except RequestError as error:
            self._picks.add((pool.name if pool else "", "", "refused"))
            self._telemetry.record_decision("pick", "refused", time.perf_counter() - started)
            log.info("no endpoint", extra={"model": model, "reason": error.message})
            return envoy_messages.immediate_error(http_error(error)), None
        chosen = ranked[0]
        self._outstanding.acquire(chosen)
        self._picks.add((pool.name, chosen, "picked"))
        self._telemetry.record_decision("pick", "picked", time.perf_counter() - started)
        response = envoy_messages.continue_request_headers(set_headers=((headers.DESTINATION_ENDPOINT, chosen),))
        response.dynamic_metadata.CopyFrom(
            envoy_messages.metadata(LB_NAMESPACE, {headers.DESTINATION_ENDPOINT: ",".join(ranked)})
        )
        return response, chosen

    @staticmethod
    def _pass_through(kind: str | None) -> extproc_pb2.ProcessingResponse:
        if kind == "response_headers":
            return envoy_messages.continue_response_headers()
        if kind == "request_body":
            return envoy_messages.continue_request_body()
        if kind == "request_headers":
            return envoy_messages.continue_request_headers()
        return envoy_messages.continue_response_body()
