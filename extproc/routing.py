"""Which endpoint a request is for, which model it names, and whether the tenant's tier may use it. Pure.

Every function raises a ``RequestError`` subclass for the client's mistakes; the servicer turns that into the
OpenAI-format answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import orjson

from tokenlabs.errors import InvalidRequest, ModelNotFound, PermissionDenied, UnknownEndpoint
from tokenlabs.settings import ModelSettings, TierSettings


class Endpoint(Enum):
    MODELS = "models"
    CHAT = "chat"
    COMPLETIONS = "completions"


_ENDPOINTS = {
    ("GET", "/v1/models"): Endpoint.MODELS,
    ("POST", "/v1/chat/completions"): Endpoint.CHAT,
    ("POST", "/v1/completions"): Endpoint.COMPLETIONS,
}


def classify(method: str, path: str) -> Endpoint:
    route = path.partition("?")[0].rstrip("/") or "/"
    endpoint = _ENDPOINTS.get((method.upper(), route))
    if endpoint is None:
        raise UnknownEndpoint(f"Invalid URL ({method.upper()} {route})")
    return endpoint


@dataclass(frozen=True)
class InferenceRequest:
    model: str
    stream: bool
    include_usage: bool


def parse_body(body: bytes) -> InferenceRequest:
    if not body:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        document: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON ({exc.msg}).") from None
    if not isinstance(document, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = document.get("model")
    if model is None:
        raise InvalidRequest("you must provide a model parameter", param="model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("'model' must be a non-empty string.", param="model")
    stream = document.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean.", param="stream")
    options = document.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("'stream_options' must be an object.", param="stream_options")
    include_usage = (options or {}).get("include_usage", False)
    if include_usage is not None and not isinstance(include_usage, bool):
        raise InvalidRequest("'stream_options.include_usage' must be a boolean.", param="stream_options")
    return InferenceRequest(model=model, stream=bool(stream), include_usage=bool(include_usage))


def resolve_model(model: str, tier: TierSettings, models: Mapping[str, ModelSettings]) -> ModelSettings:
    settings = models.get(model)
    if settings is None:
        raise ModelNotFound(f"The model '{model}' does not exist or you do not have access to it.", param="model")
    if not tier.allows_model(model):
        raise PermissionDenied(
            f"Your tier '{tier.name}' may not use the model '{model}'.",
            code="model_not_allowed",
            param="model",
        )
    return settings


def models_listing(tier: TierSettings, models: Mapping[str, ModelSettings], created: int) -> bytes:
    """The OpenAI ``GET /v1/models`` answer: only the models this tier may use."""
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "tokenlabs"}
        for name in models
        if tier.allows_model(name)
    ]
    return orjson.dumps({"object": "list", "data": data})
