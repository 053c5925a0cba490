"""Which endpoint a request is for, which model it names, and whether the tenant's tier may use it there. Pure.

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
from tokenlabs.settings import ModelKind, ModelSettings, TierSettings


class Endpoint(Enum):
    MODELS = "models"
    CHAT = "chat"
    COMPLETIONS = "completions"
    SPEECH = "speech"


_ENDPOINTS = {
    ("GET", "/v1/models"): Endpoint.MODELS,
    ("POST", "/v1/chat/completions"): Endpoint.CHAT,
    ("POST", "/v1/completions"): Endpoint.COMPLETIONS,
    ("POST", "/v1/audio/speech"): Endpoint.SPEECH,
}
_PATHS = {endpoint: path for (_, path), endpoint in _ENDPOINTS.items()}
# The kind of model each inference endpoint serves; GET /v1/models names no model.
_ENDPOINT_KIND = {
    Endpoint.CHAT: ModelKind.CHAT,
    Endpoint.COMPLETIONS: ModelKind.CHAT,
    Endpoint.SPEECH: ModelKind.SPEECH,
}
_KIND_PATHS = {ModelKind.CHAT: "/v1/chat/completions or /v1/completions", ModelKind.SPEECH: "/v1/audio/speech"}


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
    document: dict[str, Any]  # the whole parsed body, for token estimates and rewrites


def parse_body(body: bytes) -> InferenceRequest:
    document = _json_object(body)
    model = _model_of(document)
    stream = document.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean.", param="stream")
    options = document.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("'stream_options' must be an object.", param="stream_options")
    include_usage = (options or {}).get("include_usage", False)
    if include_usage is not None and not isinstance(include_usage, bool):
        raise InvalidRequest("'stream_options.include_usage' must be a boolean.", param="stream_options")
    return InferenceRequest(model=model, stream=bool(stream), include_usage=bool(include_usage), document=document)


@dataclass(frozen=True)
class SpeechRequest:
    """What the gateway needs from a ``POST /v1/audio/speech`` body: the model to route on, the input to meter."""

    model: str
    characters: int  # Unicode code points of ``input``, the unit speech is priced in


def parse_speech_body(raw: bytes) -> SpeechRequest:
    """Read a speech request body; raises only ``InvalidRequest`` (400): for an empty or undecodable body (broken
    UTF-8 included), a body that is not a JSON object, and a missing or non-string ``model`` or ``input``.

    ``voice``, ``response_format``, ``speed`` and the input's length are left to the worker to judge, as it does
    for the fields of chat bodies.
    """
    document = _json_object(raw)
    model = _model_of(document)
    text = document.get("input")
    if text is None:
        raise InvalidRequest("you must provide an input parameter", param="input")
    if not isinstance(text, str):
        raise InvalidRequest("'input' must be a string.", param="input")
    return SpeechRequest(model=model, characters=len(text))


def _model_of(document: dict[str, Any]) -> str:
    model = document.get("model")
    if model is None:
        raise InvalidRequest("you must provide a model parameter", param="model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("'model' must be a non-empty string.", param="model")
    return model


def _json_object(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        document: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON ({exc.msg}).") from None
    if not isinstance(document, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return document


def resolve_model(
    model: str, tier: TierSettings, models: Mapping[str, ModelSettings], endpoint: Endpoint
) -> ModelSettings:
    """The configured model, if it exists (else 404), the tier may use it (else 403) and it is of the kind that
    ``endpoint`` serves (else 400, see ``check_endpoint``)."""
    settings = models.get(model)
    if settings is None:
        raise ModelNotFound(f"The model '{model}' does not exist or you do not have access to it.", param="model")
    if not tier.allows_model(model):
        raise PermissionDenied(
            f"Your tier '{tier.name}' may not use the model '{model}'.",
            code="model_not_allowed",
            param="model",
        )
    check_endpoint(settings, endpoint)
    return settings


def check_endpoint(model: ModelSettings, endpoint: Endpoint) -> None:
    """Raise ``InvalidRequest`` (400) when ``endpoint`` cannot serve ``model``: a speech model on the chat or
    completions endpoints, a chat model on the speech endpoint. ``Endpoint.MODELS`` names no model: always fine."""
    wanted = _ENDPOINT_KIND.get(endpoint)
    if wanted is None or model.kind == wanted:
        return
    raise InvalidRequest(
        f"The model '{model.name}' is a {model.kind} model and is not served at {_PATHS[endpoint]}; "
        f"use {_KIND_PATHS[model.kind]}.",
        param="model",
    )


def models_listing(tier: TierSettings, models: Mapping[str, ModelSettings], created: int) -> bytes:
    """The OpenAI ``GET /v1/models`` answer: only the models this tier may use."""
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "tokenlabs"}
        for name in models
        if tier.allows_model(name)
    ]
    return orjson.dumps({"object": "list", "data": data})
