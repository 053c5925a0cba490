"""The JSON side of an OpenAI-compatible worker's HTTP layer: reading a request body, answering JSON and errors.

Shared by the simulator (``engine.sim.worker``) and the torch engine (``engine.serve``), so both answer byte for
byte alike.
"""

import time
from collections.abc import Mapping
from typing import Final
from uuid import uuid4

import orjson
from aiohttp import web

from engine.sim.errors import ApiError
from engine.sim.request_parsing import parse_json_object
from engine.sim.response_payloads import ResponseHeader

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
