import orjson
import pytest

from tokenlabs.errors import (
    BodyTooLarge,
    InvalidApiKey,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    RequestError,
    Unavailable,
    UnknownEndpoint,
    http_error,
)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (InvalidRequest("bad"), 400, "invalid_request_error"),
        (InvalidApiKey("no"), 401, "invalid_api_key"),
        (PermissionDenied("tier", code="model_not_allowed"), 403, "model_not_allowed"),
        (ModelNotFound("m"), 404, "model_not_found"),
        (UnknownEndpoint("u"), 404, "unknown_url"),
        (BodyTooLarge("big"), 413, "request_too_large"),
        (RateLimited("slow", retry_after_s=3), 429, "rate_limit_exceeded"),
        # QuotaExceeded is a RateLimited: the more specific table row must win.
        (QuotaExceeded("tokens", retry_after_s=3), 429, "insufficient_quota"),
        (Unavailable("down"), 503, "service_unavailable"),
    ],
)
def test_table_maps_each_error_to_status_and_openai_body(error: RequestError, status: int, code: str) -> None:
    answer = http_error(error)
    assert answer.status == status
    body = orjson.loads(answer.body)
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code
    assert body["error"]["message"] == error.message
    assert ("content-type", "application/json") in answer.headers


def test_rate_limits_carry_retry_after_of_at_least_one_second() -> None:
    assert ("retry-after", "1") in http_error(RateLimited("x", retry_after_s=0)).headers
    assert ("retry-after", "42") in http_error(QuotaExceeded("x", retry_after_s=42)).headers
