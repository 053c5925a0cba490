"""Odd bodies through the real gateway: random JSON shapes, broken UTF-8, huge strings. Every answer is prompt, a
client error or a success, in OpenAI's error format — never a 5xx, a hang or a dead server."""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.stack import RunningStack

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
AUTH = {"authorization": "Bearer tlabs_pro_demo_key_change_me", "content-type": "application/json"}
PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/audio/speech")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
# Bodies shaped like requests often enough to get past the first checks, and anything else.
request_like = st.fixed_dictionaries(
    {"model": st.sampled_from([LLAMA, "hexgrad/Kokoro-82M", "nope", 7, None, ""])},
    optional={
        "messages": json_values,
        "prompt": json_values,
        "input": json_values,
        "voice": json_values,
        "stream": json_values,
        "stream_options": json_values,
        "max_tokens": json_values,
    },
)


def encoded(value: Any) -> bytes:
    # The standard library writes what orjson refuses (integers beyond 64 bits, lone surrogates as broken UTF-8).
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


bodies = (
    request_like.map(encoded)
    | json_values.map(encoded)
    | st.binary(max_size=200)
    | st.tuples(request_like.map(encoded), st.binary(min_size=1, max_size=4), st.integers(0, 64)).map(
        # bytes spliced in anywhere: broken UTF-8, broken JSON
        lambda parts: parts[0][: parts[2]] + b"\xff" + parts[1] + parts[0][parts[2] :]
    )
    | st.integers(1, 3).map(
        lambda mib: encoded(
            {"model": LLAMA, "max_tokens": 1, "messages": [{"role": "user", "content": "x" * mib * 2**20}]}
        )
    )
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, path=st.sampled_from(PATHS))
def test_odd_bodies_get_prompt_client_errors_never_5xx(stack: RunningStack, body: bytes, path: str) -> None:
    response = httpx.post(f"{stack.gateway}{path}", content=body, headers=AUTH, timeout=10)
    assert response.status_code < 500, (response.status_code, response.text[:300], body[:200])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["message"] and error["type"]
