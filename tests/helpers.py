"""Small builders shared by the unit tests of the ext_proc and ext_authz servicers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import orjson
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2
from envoy.service.auth.v3 import external_auth_pb2 as authz_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as extproc_pb2
from prometheus_client.parser import text_string_to_metric_families

from tokenlabs.settings import Settings, load

REPO = Path(__file__).resolve().parents[1]


def repo_settings() -> Settings:
    return load(REPO / "tokenlabs.yaml", environ={})


def header_map(headers: dict[str, str]) -> base_pb2.HeaderMap:
    return base_pb2.HeaderMap(headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in headers.items()])


def request_headers(headers: dict[str, str], end_of_stream: bool = False) -> extproc_pb2.ProcessingRequest:
    return extproc_pb2.ProcessingRequest(
        request_headers=extproc_pb2.HttpHeaders(headers=header_map(headers), end_of_stream=end_of_stream)
    )


def request_body(body: bytes) -> extproc_pb2.ProcessingRequest:
    return extproc_pb2.ProcessingRequest(request_body=extproc_pb2.HttpBody(body=body, end_of_stream=True))


def response_headers(headers: dict[str, str]) -> extproc_pb2.ProcessingRequest:
    return extproc_pb2.ProcessingRequest(response_headers=extproc_pb2.HttpHeaders(headers=header_map(headers)))


def response_body(body: bytes, end_of_stream: bool = False) -> extproc_pb2.ProcessingRequest:
    return extproc_pb2.ProcessingRequest(response_body=extproc_pb2.HttpBody(body=body, end_of_stream=end_of_stream))


async def stream(messages: Iterable[extproc_pb2.ProcessingRequest]) -> AsyncIterator[extproc_pb2.ProcessingRequest]:
    for message in messages:
        yield message


def set_headers(response: extproc_pb2.ProcessingResponse, phase: str) -> dict[str, str]:
    mutation = getattr(response, phase).response.header_mutation
    return {option.header.key: option.header.raw_value.decode() for option in mutation.set_headers}


def check_request(
    headers: dict[str, str], path: str = "/v1/chat/completions", body: str = ""
) -> authz_pb2.CheckRequest:
    http = attribute_context_pb2.AttributeContext.HttpRequest(headers=headers, path=path, method="POST", body=body)
    return authz_pb2.CheckRequest(
        attributes=attribute_context_pb2.AttributeContext(
            request=attribute_context_pb2.AttributeContext.Request(http=http)
        )
    )


def response_header_values(response: authz_pb2.CheckResponse) -> dict[str, str]:
    """The headers an ext_authz answer adds to the client's response (allowed) or carries (denied)."""
    if response.HasField("ok_response"):
        options = response.ok_response.response_headers_to_add
    else:
        options = response.denied_response.headers
    return {option.header.key: option.header.value for option in options}


def sse_events(body: bytes) -> list[Any]:
    """The data of every server-sent event in a whole response body, JSON-decoded except the literal ``[DONE]``."""
    text = body.decode()
    assert text.endswith("\n\n"), text[-200:]
    events = []
    for frame in text.split("\n\n")[:-1]:
        assert frame.startswith("data: "), frame
        data = frame.removeprefix("data: ")
        events.append(data if data == "[DONE]" else orjson.loads(data))
    return events


def metric_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Samples by (name, labels), for exact lookups in assertions."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(text: str, name: str, **labels: str) -> float | None:
    """The sum of the samples ``name`` whose labels include ``labels``; None when there is none (not exported)."""
    values = [
        value
        for (found, found_labels), value in metric_samples(text).items()
        if found == name and labels.items() <= dict(found_labels).items()
    ]
    return sum(values) if values else None


def metric(text: str, name: str, **labels: str) -> float:
    """As ``sample``, with a counter that has not counted yet (not exported) read as 0."""
    value = sample(text, name, **labels)
    return 0.0 if value is None else value
