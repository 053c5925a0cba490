import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from extproc.routing import (
    Endpoint,
    SpeechRequest,
    check_endpoint,
    classify,
    models_listing,
    parse_body,
    parse_speech_body,
    resolve_model,
)
from tokenlabs.errors import InvalidRequest, ModelNotFound, PermissionDenied, UnknownEndpoint, http_error
from tokenlabs.settings import ModelKind, ModelSettings, TierSettings

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
    assert resolve_model("llama", FREE, MODELS, Endpoint.CHAT) is MODELS["llama"]
    with pytest.raises(ModelNotFound):
        resolve_model("gpt-9", PRO, MODELS, Endpoint.CHAT)
    with pytest.raises(PermissionDenied):
        resolve_model("vl", FREE, MODELS, Endpoint.CHAT)


def test_models_listing_is_filtered_by_tier() -> None:
    listing = orjson.loads(models_listing(FREE, MODELS, created=1))
    assert listing["object"] == "list"
    assert [model["id"] for model in listing["data"]] == ["llama"]
    assert [m["id"] for m in orjson.loads(models_listing(PRO, MODELS, 1))["data"]] == ["llama", "vl"]


TTS = ModelSettings("tts", "speech", 0.0, 0.0, kind=ModelKind.SPEECH, input_usd_per_1m_characters=15.0)
WITH_SPEECH = {**MODELS, "tts": TTS}
# JSON values of every shape, nested a few levels deep (integers within what orjson writes).
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
# Objects that have the speech fields, holding values of any shape, so that both outcomes are common.
SPEECH_SHAPED = st.fixed_dictionaries(
    {"model": st.text(min_size=1) | JSON_VALUES, "input": st.text() | JSON_VALUES},
    optional={"voice": JSON_VALUES, "speed": JSON_VALUES},
)
# Byte sequences that are never valid UTF-8: a stray continuation byte, a truncated sequence, an overlong
# encoding, an encoded surrogate, bytes that never occur.
BROKEN_UTF8 = st.sampled_from([b"\x80", b"\xc3", b"\xe2\x82", b"\xc0\xaf", b"\xed\xa0\x80", b"\xff", b"\xfe"])


def test_classify_speech() -> None:
    assert classify("POST", "/v1/audio/speech") is Endpoint.SPEECH
    with pytest.raises(UnknownEndpoint):
        classify("GET", "/v1/audio/speech")


def test_speech_body_gives_the_model_and_the_input_in_code_points() -> None:
    body = orjson.dumps({"model": "tts", "input": "héllo 👋", "voice": "alloy", "response_format": "wav"})
    assert parse_speech_body(body) == SpeechRequest(model="tts", characters=7)
    assert parse_speech_body(b'{"model": "tts", "input": ""}').characters == 0  # the worker refuses it, not us


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"", None),
        (b"{not json", None),
        (b'{"model": "tts", "input": "\xff"}', None),  # broken UTF-8
        (b'"just a string"', None),
        (b'{"input": "hi"}', "model"),
        (b'{"model": ["tts"], "input": "hi"}', "model"),
        (b'{"model": " ", "input": "hi"}', "model"),
        (b'{"model": "tts"}', "input"),
        (b'{"model": "tts", "input": null}', "input"),
        (b'{"model": "tts", "input": ["hi"]}', "input"),
        (b'{"model": "tts", "input": 42}', "input"),
    ],
)
def test_malformed_speech_bodies_are_400(body: bytes, param: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_speech_body(body)
    assert caught.value.param == param


@given(JSON_VALUES | SPEECH_SHAPED)
def test_any_json_value_is_read_or_refused_with_400(value: object) -> None:
    raw = orjson.dumps(value)
    try:
        request = parse_speech_body(raw)
    except InvalidRequest:
        return
    assert isinstance(value, dict)
    assert request == SpeechRequest(model=value["model"], characters=len(value["input"]))


@given(st.text(), st.text(min_size=1), st.integers(min_value=0), BROKEN_UTF8)
def test_broken_utf8_anywhere_is_400(text: str, model: str, where: int, broken: bytes) -> None:
    raw = orjson.dumps({"model": model, "input": text})
    cut = where % (len(raw) + 1)
    with pytest.raises(InvalidRequest):
        parse_speech_body(raw[:cut] + broken + raw[cut:])


@given(st.binary(max_size=64))
def test_arbitrary_bytes_are_read_or_refused_with_400(raw: bytes) -> None:
    try:
        request = parse_speech_body(raw)
    except InvalidRequest:
        return
    assert request.model.strip() and request.characters >= 0


@given(st.text(), st.text().filter(str.strip))
def test_characters_are_the_code_points_of_any_input(text: str, model: str) -> None:
    assert parse_speech_body(orjson.dumps({"model": model, "input": text})).characters == len(text)


@pytest.mark.parametrize("endpoint", [Endpoint.CHAT, Endpoint.COMPLETIONS])
def test_speech_model_on_a_text_endpoint_is_400(endpoint: Endpoint) -> None:
    with pytest.raises(InvalidRequest) as caught:
        resolve_model("tts", PRO, WITH_SPEECH, endpoint)
    assert caught.value.param == "model"
    assert "speech model" in caught.value.message and "/v1/audio/speech" in caught.value.message
    assert http_error(caught.value).status == 400
    assert orjson.loads(http_error(caught.value).body)["error"]["type"] == "invalid_request_error"


def test_chat_model_on_the_speech_endpoint_is_400() -> None:
    with pytest.raises(InvalidRequest) as caught:
        resolve_model("llama", PRO, WITH_SPEECH, Endpoint.SPEECH)
    assert "chat model" in caught.value.message and "/v1/chat/completions" in caught.value.message


def test_models_are_served_on_the_endpoints_of_their_kind() -> None:
    assert resolve_model("tts", PRO, WITH_SPEECH, Endpoint.SPEECH) is TTS
    assert resolve_model("llama", PRO, WITH_SPEECH, Endpoint.COMPLETIONS) is MODELS["llama"]
    check_endpoint(TTS, Endpoint.MODELS)
    check_endpoint(MODELS["llama"], Endpoint.MODELS)
    # Existence and the tier are judged first: they do not depend on the endpoint.
    with pytest.raises(PermissionDenied):
        resolve_model("tts", FREE, WITH_SPEECH, Endpoint.CHAT)
    with pytest.raises(ModelNotFound):
        resolve_model("tts-1", PRO, WITH_SPEECH, Endpoint.SPEECH)


def test_speech_models_are_listed_like_any_other() -> None:
    assert [m["id"] for m in orjson.loads(models_listing(PRO, WITH_SPEECH, 1))["data"]] == ["llama", "vl", "tts"]
