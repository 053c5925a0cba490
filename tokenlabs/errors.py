"""The exception tree shared by every tokenlabs server, and the one table that turns it into HTTP answers.

    TokenlabsError
    ├── ConfigError            bad configuration; raised at start-up, never on a request path
    └── RequestError           a decision about one request, answered to the client in OpenAI's error format
        ├── InvalidRequest         400 invalid_request_error
        ├── InvalidApiKey          401 invalid_api_key
        ├── PermissionDenied       403 permission_error
        ├── ModelNotFound          404 model_not_found
        ├── UnknownEndpoint        404 unknown_url
        ├── BodyTooLarge           413 request_too_large
        ├── RateLimited            429 rate_limit_exceeded (requests)
        ├── QuotaExceeded          429 insufficient_quota (tokens)
        └── Unavailable            503 service_unavailable (no worker, store down in fail-closed mode)

Servers translate third-party failures into one of these at their edge; ``http_error`` is the only place that
knows statuses and body shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


class TokenlabsError(Exception):
    """Base of every error tokenlabs raises on purpose."""


class ConfigError(TokenlabsError):
    """A configuration value is missing or wrong; the message names the key and the value."""

    def __init__(self, key: str, value: Any, reason: str) -> None:
        self.key = key
        self.value = value
        self.reason = reason
        shown = "" if value is None else f", got {value!r}"
        super().__init__(f"config key '{key}': {reason}{shown}")


class RequestError(TokenlabsError):
    """A request is refused; ``message`` is safe to show to the client (it never holds a key)."""

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


class InvalidRequest(RequestError):
    pass


class InvalidApiKey(RequestError):
    pass


class PermissionDenied(RequestError):
    pass


class ModelNotFound(RequestError):
    pass


class UnknownEndpoint(RequestError):
    pass


class BodyTooLarge(RequestError):
    pass


class RateLimited(RequestError):
    def __init__(self, message: str, *, retry_after_s: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class QuotaExceeded(RateLimited):
    pass


class Unavailable(RequestError):
    pass


@dataclass(frozen=True)
class ErrorKind:
    status: int
    type: str
    code: str


# Most specific class first: lookup walks the exception's MRO.
ERROR_TABLE: dict[type[RequestError], ErrorKind] = {
    InvalidRequest: ErrorKind(400, "invalid_request_error", "invalid_request_error"),
    InvalidApiKey: ErrorKind(401, "invalid_request_error", "invalid_api_key"),
    PermissionDenied: ErrorKind(403, "permission_error", "permission_denied"),
    ModelNotFound: ErrorKind(404, "invalid_request_error", "model_not_found"),
    UnknownEndpoint: ErrorKind(404, "invalid_request_error", "unknown_url"),
    BodyTooLarge: ErrorKind(413, "invalid_request_error", "request_too_large"),
    QuotaExceeded: ErrorKind(429, "tokens", "insufficient_quota"),
    RateLimited: ErrorKind(429, "requests", "rate_limit_exceeded"),
    Unavailable: ErrorKind(503, "service_unavailable", "service_unavailable"),
}
_FALLBACK = ErrorKind(500, "server_error", "internal_error")


@dataclass(frozen=True)
class HttpError:
    """An error answer ready to be put on the wire by any server."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    code: str


def kind_of(error: RequestError) -> ErrorKind:
    for cls in type(error).__mro__:
        kind = ERROR_TABLE.get(cls)
        if kind is not None:
            return kind
    return _FALLBACK


def http_error(error: RequestError, extra_headers: tuple[tuple[str, str], ...] = ()) -> HttpError:
    kind = kind_of(error)
    code = error.code or kind.code
    body = orjson.dumps({"error": {"message": error.message, "type": kind.type, "param": error.param, "code": code}})
    headers: list[tuple[str, str]] = [("content-type", "application/json")]
    if isinstance(error, RateLimited):
        headers.append(("retry-after", str(max(1, error.retry_after_s))))
    headers.extend(extra_headers)
    return HttpError(status=kind.status, body=body, headers=tuple(headers), code=code)
