"""The ext_proc stream for one HTTP exchange: a thin state machine around the pure routing and usage code.

Envoy's processing mode (envoy/bootstrap.yaml.j2): request headers SEND, request body BUFFERED (the model is in
the body, and header mutations from the body phase apply only when buffered), response headers SEND, response
body STREAMED (tokens must reach the client as the worker produces them; each chunk is read for ``usage``).

An exchange that starts with ``response_headers`` is one of Envoy's own local replies (e.g. ext_authz's 401):
it has no request state and is passed through untouched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from envoy.service.ext_proc.v3 import external_processor_pb2 as extproc_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as extproc_grpc

from extproc.metering import Metering
from extproc.quota import TokenLimits, Tokens, charge, reservation, token_limits
from extproc.reservations import Refusal, Reservation, Reservations
from extproc.routing import Endpoint, classify, models_listing, parse_body, parse_speech_body, resolve_model
from extproc.stream_options import force_include_usage
from extproc.usage import JsonUsageReader, SseUsageReader, Usage
from tokenlabs import envoy_messages
from tokenlabs import headers as mesh_headers
from tokenlabs.envoy_messages import HeaderPairs, read_headers
from tokenlabs.errors import InvalidApiKey, InvalidRequest, RequestError, Unavailable, http_error
from tokenlabs.quota.scopes import requests_scope
from tokenlabs.quota.store import QuotaStore, QuotaStoreError
from tokenlabs.quota.windows import DAY, MINUTE, Limit
from tokenlabs.settings import LimitSettings, ModelSettings, Settings, TierSettings
from tokenlabs.telemetry import Telemetry

log = logging.getLogger(__name__)

SERVICE_NAME = envoy_messages.EXT_PROC_SERVICE
# Upper bound on a non-streamed response body kept to read its usage.
JSON_RESPONSE_LIMIT = 8 * 1024 * 1024
# With a process-local store authz's request counters live in authz's memory, so extproc keeps its own (never
# refusing) to report request windows in the usage service; with a shared store it reads authz's.
_COUNT_ONLY = (Limit("minute", MINUTE, 1 << 62), Limit("day", DAY, 1 << 62))
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
    endpoint: Endpoint | None = None
    speech_characters: int = 0
    reservation: Reservation | None = None
    drop_usage_chunk: bool = False  # the gateway forced include_usage; the client must not see that chunk
    # Processing time of the request-side and the response-side messages, recorded once when the stream ends.
    request_seconds: float = 0.0
    response_seconds: float = 0.0


class ExternalProcessorServicer(extproc_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    def __init__(self, settings: Settings, telemetry: Telemetry, metering: Metering, store: QuotaStore) -> None:
        self._tiers: Mapping[str, TierSettings] = settings.tiers
        self._token_limits: Mapping[str, TokenLimits] = {name: token_limits(t) for name, t in settings.tiers.items()}
        self._models: Mapping[str, ModelSettings] = settings.models
        self._limits: LimitSettings = settings.limits
        self._telemetry = telemetry
        self._metering = metering
        self._store = store
        self._reservations = Reservations(store)
        self._count_requests = settings.quota_store.is_memory
        self._listing_cache: dict[str, bytes] = {}
        # Settlements run after their stream has ended; held here so that none is lost and close() can wait.
        self._settling: set[asyncio.Task[None]] = set()

    async def Process(
        self, request_iterator: AsyncIterator[extproc_pb2.ProcessingRequest], context: Any
    ) -> AsyncIterator[extproc_pb2.ProcessingResponse]:
        exchange = Exchange()
        try:
            async for message in request_iterator:
                kind = message.WhichOneof("request")
                started = time.perf_counter()
                try:
                    response = await self._handle(kind, message, exchange)
                except RequestError as error:
                    response = self._refuse(exchange, error)
                except QuotaStoreError as error:
                    log.warning("quota store unavailable; refusing (fail-closed)", extra={"error": str(error)})
                    response = self._refuse(exchange, Unavailable("Token quotas are temporarily unavailable."))
                except Exception:
                    log.exception("ext_proc message failed", extra={"phase": kind})
                    response = self._fail_safe(kind, exchange)
                if kind in _RESPONSE_PHASES:
                    exchange.response_seconds += time.perf_counter() - started
                else:
                    exchange.request_seconds += time.perf_counter() - started
                yield response
        finally:
            # Also when the client went away mid-stream (the stream is cancelled): charge what is known.
            self._finish(exchange)

    async def close(self) -> None:
        """Wait for the settlements still in flight (on shutdown, after the server stopped taking streams)."""
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)

    async def _handle(
        self, kind: str | None, message: extproc_pb2.ProcessingRequest, exchange: Exchange
    ) -> extproc_pb2.ProcessingResponse:
        if kind == "request_headers":
            return self._on_request_headers(message.request_headers, exchange)
        if kind == "request_body":
            return await self._on_request_body(message.request_body, exchange)
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
        exchange.endpoint = endpoint
        exchange.phase = Phase.AWAIT_BODY
        return envoy_messages.continue_request_headers()

    async def _on_request_body(self, body: extproc_pb2.HttpBody, exchange: Exchange) -> extproc_pb2.ProcessingResponse:
        exchange.body_parts.append(body.body)
        if not body.end_of_stream:
            return envoy_messages.continue_request_body()
        raw = b"".join(exchange.body_parts)
        exchange.body_parts.clear()
        assert exchange.tier is not None and exchange.endpoint is not None  # set in the headers phase
        rewritten: bytes | None = None
        if exchange.endpoint is Endpoint.SPEECH:
            speech = parse_speech_body(raw)
            exchange.model = resolve_model(speech.model, exchange.tier, self._models, exchange.endpoint)
            exchange.speech_characters = speech.characters
            model_name, tokens = speech.model, Tokens.of(speech.characters, 0)  # speech is metered by characters
        else:
            request = parse_body(raw)
            exchange.model = resolve_model(request.model, exchange.tier, self._models, exchange.endpoint)
            model_name, tokens = request.model, reservation(request.document, self._limits)
            rewrite = force_include_usage(request.document)
            rewritten, exchange.drop_usage_chunk = rewrite.body, rewrite.drop_usage_only
        limits = self._token_limits[exchange.tier.name]
        if limits.any:
            outcome = await self._reservations.reserve(exchange.tenant, limits, tokens)
            if isinstance(outcome, Refusal):
                return self._refuse(exchange, outcome.error, outcome.headers)
            exchange.reservation = outcome
        if self._count_requests:
            await self._store.acquire(requests_scope(exchange.tenant), _COUNT_ONLY)
        exchange.phase = Phase.ROUTED
        set_headers: list[tuple[str, str]] = [(mesh_headers.MODEL, model_name)]
        if rewritten is not None:
            set_headers.append(("content-length", str(len(rewritten))))
        return envoy_messages.continue_request_body(
            set_headers=set_headers, clear_route_cache=True, replace_body=rewritten
        )

    def _on_response_headers(
        self, headers_message: extproc_pb2.HttpHeaders, exchange: Exchange
    ) -> extproc_pb2.ProcessingResponse:
        if exchange.phase is not Phase.ROUTED:
            exchange.phase = Phase.PASSTHROUGH
            return envoy_messages.continue_response_headers()
        headers = read_headers(headers_message.headers)
        exchange.status = int(headers.get(":status", "0") or 0)
        added = exchange.reservation.headers if exchange.reservation is not None else ()
        if exchange.endpoint is Endpoint.SPEECH:
            # Audio carries no usage (characters were counted from the request): Envoy need not send the body,
            # which may be tens of MiB arriving faster than any gRPC message limit.
            return envoy_messages.continue_response_headers(added, skip_body=True)
        if headers.get("content-type", "").startswith("text/event-stream"):
            exchange.reader = SseUsageReader(drop_usage_only=exchange.drop_usage_chunk)
        else:
            exchange.reader = JsonUsageReader(JSON_RESPONSE_LIMIT)
        return envoy_messages.continue_response_headers(added)

    def _on_response_body(self, body: extproc_pb2.HttpBody, exchange: Exchange) -> extproc_pb2.ProcessingResponse:
        reader = exchange.reader
        if isinstance(reader, SseUsageReader):
            chunk = body.body  # read once: every read of a bytes field makes a new object
            forwarded = reader.feed(chunk, body.end_of_stream)
            return envoy_messages.continue_response_body(None if forwarded is chunk else forwarded)
        if reader is not None:
            reader.feed(body.body)
        return envoy_messages.continue_response_body()

    def _listing(self, tier: TierSettings) -> bytes:
        cached = self._listing_cache.get(tier.name)
        if cached is None:
            cached = self._listing_cache[tier.name] = models_listing(tier, self._models, int(time.time()))
        return cached

    def _refuse(
        self, exchange: Exchange, error: RequestError, headers: HeaderPairs = ()
    ) -> extproc_pb2.ProcessingResponse:
        exchange.phase = Phase.ANSWERED
        answer = http_error(error, tuple(headers))
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
            if exchange.reservation is not None:  # reserved, then refused or failed before reaching a worker
                self._settle(exchange.reservation, Tokens.of(0, 0))
            return
        self._telemetry.record_decision("response", exchange.phase.value, exchange.response_seconds)
        reader = exchange.reader
        usage, streamed = None, 0
        if exchange.endpoint is Endpoint.SPEECH and 200 <= exchange.status < 300:
            characters = exchange.speech_characters
            usage = Usage(characters, 0, characters)
        elif isinstance(reader, SseUsageReader):
            usage, streamed = reader.last_usage, reader.completion_chunks
        elif isinstance(reader, JsonUsageReader):
            usage = reader.usage()
        tier = exchange.tier.name if exchange.tier is not None else ""
        self._metering.record(exchange.tenant, exchange.model, exchange.status, usage, tier=tier)
        if exchange.reservation is not None:
            self._settle(exchange.reservation, charge(exchange.reservation.reserved, usage, streamed))

    def _settle(self, reservation: Reservation, charged: Tokens) -> None:
        task = asyncio.get_running_loop().create_task(self._settle_now(reservation, charged))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle_now(self, reservation: Reservation, charged: Tokens) -> None:
        try:
            await self._reservations.settle(reservation, charged)
        except QuotaStoreError as error:
            log.warning("token charge not written", extra={"error": str(error), "tokens": charged.total})
