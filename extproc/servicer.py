"""The ext_proc stream for one HTTP exchange: a thin state machine around the pure routing and usage code.

Envoy's processing mode (envoy/bootstrap.yaml.j2): request headers SEND, request body BUFFERED (the model is in
the body, and header mutations from the body phase apply only when buffered), response headers SEND, response
body STREAMED (tokens must reach the client as the worker produces them; each chunk is read for ``usage``).

An exchange that starts with ``response_headers`` is one of Envoy's own local replies (e.g. ext_authz's 401):
it has no request state and is passed through untouched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from envoy.service.ext_proc.v3 import external_processor_pb2 as extproc_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as extproc_grpc

from extproc.metering import Metering
from extproc.routing import Endpoint, classify, models_listing, parse_body, resolve_model
from extproc.usage import JsonUsageReader, SseUsageReader
from tokenlabs import envoy_messages
from tokenlabs import headers as mesh_headers
from tokenlabs.envoy_messages import read_headers
from tokenlabs.errors import InvalidApiKey, InvalidRequest, RequestError, Unavailable, http_error
from tokenlabs.settings import ModelSettings, Settings, TierSettings
from tokenlabs.telemetry import Telemetry

log = logging.getLogger(__name__)

SERVICE_NAME = envoy_messages.EXT_PROC_SERVICE
# Upper bound on a non-streamed response body kept to read its usage.
JSON_RESPONSE_LIMIT = 8 * 1024 * 1024
_RESPONSE_PHASES = frozenset({"response_headers", "response_body"})


class Phase(Enum):
    START = "start"
    AWAIT_BODY = "await_body"
    ROUTED = "routed"
    PASSTHROUGH = "passthrough"
    ANSWERED = "answered"


@dataclass
class Exchange:
    """What this stream has learned so far; the phase is protocol state, the rest are request facts."""

    phase: Phase = Phase.START
    tenant: str = ""
    tier: TierSettings | None = None
    model: ModelSettings | None = None
    status: int = 0
    reader: JsonUsageReader | SseUsageReader | None = None
    body_parts: list[bytes] = field(default_factory=list)
    # Processing time of the request-side and the response-side messages, recorded once when the stream ends.
    request_seconds: float = 0.0
    response_seconds: float = 0.0


class ExternalProcessorServicer(extproc_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    def __init__(self, settings: Settings, telemetry: Telemetry, metering: Metering) -> None:
        self._tiers: Mapping[str, TierSettings] = settings.tiers
        self._models: Mapping[str, ModelSettings] = settings.models
        self._telemetry = telemetry
        self._metering = metering
        self._listing_cache: dict[str, bytes] = {}

    async def Process(
        self, request_iterator: AsyncIterator[extproc_pb2.ProcessingRequest], context: Any
    ) -> AsyncIterator[extproc_pb2.ProcessingResponse]:
        exchange = Exchange()
        async for message in request_iterator:
            kind = message.WhichOneof("request")
            started = time.perf_counter()
            try:
                response = self._handle(kind, message, exchange)
            except RequestError as error:
                response = self._refuse(exchange, error)
            except Exception:
                log.exception("ext_proc message failed", extra={"phase": kind})
                response = self._fail_safe(kind, exchange)
            if kind in _RESPONSE_PHASES:
                exchange.response_seconds += time.perf_counter() - started
            else:
                exchange.request_seconds += time.perf_counter() - started
            yield response
        self._finish(exchange)

    def _handle(
        self, kind: str | None, message: extproc_pb2.ProcessingRequest, exchange: Exchange
    ) -> extproc_pb2.ProcessingResponse:
        if kind == "request_headers":
            return self._on_request_headers(message.request_headers, exchange)
        if kind == "request_body":
            return self._on_request_body(message.request_body, exchange)
        if kind == "response_headers":
            return self._on_response_headers(message.response_headers, exchange)
        if kind == "response_body":
            return self._on_response_body(message.response_body, exchange)
        raise InvalidRequest(f"unexpected ext_proc message {kind}")

    def _on_request_headers(
        self, headers_message: extproc_pb2.HttpHeaders, exchange: Exchange
    ) -> extproc_pb2.ProcessingResponse:
        headers = read_headers(headers_message.headers)
        exchange.tenant = headers.get(mesh_headers.TENANT_ID, "")
        exchange.tier = self._tiers.get(headers.get(mesh_headers.TENANT_TIER, ""))
        endpoint = classify(headers.get(":method", ""), headers.get(":path", ""))
        if not exchange.tenant or exchange.tier is None:
            raise InvalidApiKey("The request carries no tenant identity.")
        if endpoint is Endpoint.MODELS:
            exchange.phase = Phase.ANSWERED
            return envoy_messages.immediate_response(
                200, self._listing(exchange.tier), (("content-type", "application/json"),)
            )
        if headers_message.end_of_stream:
            raise InvalidRequest("The request body is empty; send a JSON object.")
        exchange.phase = Phase.AWAIT_BODY
        return envoy_messages.continue_request_headers()

    def _on_request_body(self, body: extproc_pb2.HttpBody, exchange: Exchange) -> extproc_pb2.ProcessingResponse:
        exchange.body_parts.append(body.body)
        if not body.end_of_stream:
            return envoy_messages.continue_request_body()
        request = parse_body(b"".join(exchange.body_parts))
        exchange.body_parts.clear()
        assert exchange.tier is not None  # set in the headers phase, or we never got here
        exchange.model = resolve_model(request.model, exchange.tier, self._models)
        exchange.phase = Phase.ROUTED
        return envoy_messages.continue_request_body(
            set_headers=((mesh_headers.MODEL, request.model),), clear_route_cache=True
        )

    def _on_response_headers(
        self, headers_message: extproc_pb2.HttpHeaders, exchange: Exchange
    ) -> extproc_pb2.ProcessingResponse:
        if exchange.phase is not Phase.ROUTED:
            exchange.phase = Phase.PASSTHROUGH
            return envoy_messages.continue_response_headers()
        headers = read_headers(headers_message.headers)
        exchange.status = int(headers.get(":status", "0") or 0)
        if headers.get("content-type", "").startswith("text/event-stream"):
            exchange.reader = SseUsageReader()
        else:
            exchange.reader = JsonUsageReader(JSON_RESPONSE_LIMIT)
        return envoy_messages.continue_response_headers()

    def _on_response_body(self, body: extproc_pb2.HttpBody, exchange: Exchange) -> extproc_pb2.ProcessingResponse:
        if exchange.reader is not None:
            exchange.reader.feed(body.body)
        return envoy_messages.continue_response_body()

    def _listing(self, tier: TierSettings) -> bytes:
        cached = self._listing_cache.get(tier.name)
        if cached is None:
            cached = self._listing_cache[tier.name] = models_listing(tier, self._models, int(time.time()))
        return cached

    def _refuse(self, exchange: Exchange, error: RequestError) -> extproc_pb2.ProcessingResponse:
        exchange.phase = Phase.ANSWERED
        answer = http_error(error)
        log.info("refused", extra={"status": answer.status, "code": answer.code, "tenant": exchange.tenant})
        return envoy_messages.immediate_error(answer)

    def _fail_safe(self, kind: str | None, exchange: Exchange) -> extproc_pb2.ProcessingResponse:
        """A bug must not hang or crash the exchange: refuse while the request is ours, else let it pass."""
        if kind in ("request_headers", "request_body"):
            return self._refuse(exchange, Unavailable("The gateway could not process this request."))
        exchange.reader = None
        if kind == "response_headers":
            return envoy_messages.continue_response_headers()
        return envoy_messages.continue_response_body()

    def _finish(self, exchange: Exchange) -> None:
        self._telemetry.record_decision("request", exchange.phase.value, exchange.request_seconds)
        if exchange.phase is not Phase.ROUTED or exchange.model is None:
            return
        self._telemetry.record_decision("response", exchange.phase.value, exchange.response_seconds)
        reader = exchange.reader
        if isinstance(reader, SseUsageReader):
            usage = reader.last_usage
        elif isinstance(reader, JsonUsageReader):
            usage = reader.usage()
        else:
            usage = None
        self._metering.record(exchange.tenant, exchange.model, exchange.status, usage)
