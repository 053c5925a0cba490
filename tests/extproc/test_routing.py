import orjson
import pytest

from extproc.routing import Endpoint, classify, models_listing, parse_body, resolve_model
from tokenlabs.errors import InvalidRequest, ModelNotFound, PermissionDenied, UnknownEndpoint
from tokenlabs.settings import ModelSettings, TierSettings

MODELS = {
    "llama": ModelSettings("llama", "p1", 0.1, 0.2),
    "vl": ModelSettings("vl", "p2", 0.2, 0.6),
}
FREE = TierSettings("free", 10, 100, 5000, 50000, ("llama",))
PRO = TierSettings("pro", 100, 5000, 50000, 500000, ("*",))


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/v1/models", Endpoint.MODELS),
        ("get", "/v1/models/", Endpoint.MODELS),
        ("POST", "/v1/chat/completions?x=1", Endpoint.CHAT),
        ("POST", "/v1/completions", Endpoint.COMPLETIONS),
    ],
)
def test_classify_known_endpoints(method: str, path: str, expected: Endpoint) -> None:
    assert classify(method, path) is expected


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/chat/completions"), ("POST", "/v2/x"), ("DELETE", "/v1/models")]
)
def test_classify_unknown_is_404(method: str, path: str) -> None:
    with pytest.raises(UnknownEndpoint):
        classify(method, path)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"", None),
        (b"{not json", None),
        (b"\xff\xfe{}", None),  # broken UTF-8
        (b"[1, 2]", None),
        (b'{"messages": []}', "model"),
        (b'{"model": 7}', "model"),
        (b'{"model": "  "}', "model"),
        (b'{"model": "llama", "stream": "yes"}', "stream"),
        (b'{"model": "llama", "stream_options": []}', "stream_options"),
        (b'{"model": "llama", "stream_options": {"include_usage": 1}}', "stream_options"),
    ],
)
def test_malformed_bodies_are_400(body: bytes, param: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_body(body)
    assert caught.value.param == param


def test_body_fields_are_read() -> None:
    request = parse_body(b'{"model": "llama", "stream": true, "stream_options": {"include_usage": true}}')
    assert (request.model, request.stream, request.include_usage) == ("llama", True, True)
    assert parse_body(b'{"model": "llama"}').stream is False


def test_unknown_model_is_404_and_tier_restriction_is_403() -> None:
    assert resolve_model("llama", FREE, MODELS) is MODELS["llama"]
    with pytest.raises(ModelNotFound):
        resolve_model("gpt-9", PRO, MODELS)
    with pytest.raises(PermissionDenied):
        resolve_model("vl", FREE, MODELS)


def test_models_listing_is_filtered_by_tier() -> None:
    listing = orjson.loads(models_listing(FREE, MODELS, created=1))
    assert listing["object"] == "list"
    assert [model["id"] for model in listing["data"]] == ["llama"]
    assert [m["id"] for m in orjson.loads(models_listing(PRO, MODELS, 1))["data"]] == ["llama", "vl"]
