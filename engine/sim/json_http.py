"""The JSON side of an OpenAI-compatible worker's HTTP layer: reading a request body, answering JSON and errors.

Shared by the simulator (``engine.sim.worker``) and the torch engine (``engine.serve``), so both answer byte for
byte alike.
"""

import time
from collections.abc import Mapping
from typing import Final, Protocol
from uuid import uuid4

import orjson
from aiohttp import web

from engine.sim.errors import ApiError, model_not_found
from engine.sim.metrics import METRICS_CONTENT_TYPE
from engine.sim.request_parsing import parse_json_object
from engine.sim.response_payloads import ResponseHeader, model_list

# Base64 data URLs of images make chat bodies large; vLLM sets no limit of its own.
MAX_REQUEST_BYTES: Final = 64 * 1024 * 1024


async def read_json_object(request: web.Request) -> Mapping[str, object]:
    """The request's body as a JSON object; ``ApiError`` 413 beyond ``client_max_size``, 400 for anything else."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as error:
        raise ApiError(413, f"The request body exceeds {MAX_REQUEST_BYTES} bytes.", code="request_too_large") from error
    return parse_json_object(raw)


def new_header(id_prefix: str, model: str) -> ResponseHeader:
    return ResponseHeader(id=f"{id_prefix}-{uuid4().hex}", created=int(time.time()), model=model)


def json_response(payload: Mapping[str, object]) -> web.Response:
    return web.Response(body=orjson.dumps(payload), content_type="application/json")


def error_response(error: ApiError) -> web.Response:
    return web.Response(status=error.status, body=orjson.dumps(error.body()), content_type="application/json")


def event_stream_response() -> web.StreamResponse:
    """A response for server-sent events, not yet prepared."""
    return web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"})


class MetricsRenderer(Protocol):
    def render(self) -> bytes: ...


class ServedWorker(Protocol):
    """What the routes both engines answer alike need of a worker."""

    @property
    def model_names(self) -> tuple[str, ...]: ...

    @property
    def created(self) -> int: ...

    @property
    def max_model_len(self) -> int: ...

    @property
    def metrics(self) -> MetricsRenderer: ...


class WorkerRoutes:
    """``GET /v1/models``, ``/health`` and ``/metrics``, and the served-model check, for either engine's API."""

    def __init__(self, worker: ServedWorker) -> None:
        self._served = worker

    def application(self) -> web.Application:
        """An application with these routes and the request size limit; the caller adds its generation routes."""
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        return app

    async def models(self, request: web.Request) -> web.Response:
        worker = self._served
        return json_response(model_list(worker.model_names, worker.created, worker.max_model_len))

    async def health(self, request: web.Request) -> web.Response:
        return web.Response()

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self._served.metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    def require_served(self, model: str) -> None:
        """Raises ``ApiError`` 404 ``model_not_found`` for a model the worker does not serve."""
        if model not in self._served.model_names:
            raise model_not_found(model)
