"""Failures answer promptly in OpenAI's error format: big bodies, stalled plugin servers, absent workers."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.integration.stack import RunningStack, stack_config, start_stack

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
VL = "nvidia/NVIDIA-Nemotron-Nano-12B-v2-VL-FP8"
AUTH = {"authorization": "Bearer tlabs_pro_demo_key_change_me", "content-type": "application/json"}
CHAT = orjson.dumps({"model": LLAMA, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})


def post(stack: RunningStack, body: bytes) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.post(f"{stack.gateway}/v1/chat/completions", content=body, headers=AUTH, timeout=15)
    return response, time.monotonic() - started


def test_body_over_the_limit_is_a_prompt_413(stack: RunningStack) -> None:
    response, elapsed = post(stack, b"x" * (10 * 1024 * 1024))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert elapsed < 5


def test_multi_mib_image_body_passes_intact(stack: RunningStack) -> None:
    image = "data:image/png;base64," + "A" * (6 * 1024 * 1024)
    body = orjson.dumps(
        {
            "model": VL,
            "max_tokens": 2,
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}}]}],
        }
    )
    response, _ = post(stack, body)
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] == 2


MIB = 1024 * 1024


def chunked(size: int) -> Iterator[bytes]:
    """A body without ``content-length``: httpx sends a generator with ``transfer-encoding: chunked``."""
    piece = b"x" * 65536
    for _ in range(size // len(piece)):
        yield piece
    yield b"x" * (size % len(piece))


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_large_bodies_are_served_or_refused_promptly_never_hung(stack: RunningStack, declared: bool) -> None:
    """The large-body stall (ext_authz pending while a buffered body outgrows Envoy's buffer) must not come back:
    Envoy's buffer filter, first in the chain, holds every body to the configured maximum before any plugin runs."""
    limit = stack.config["limits"]["max_request_body_bytes"]
    for size in (limit - MIB, limit, limit + 1, limit + MIB, 4 * limit) * 3:
        started = time.monotonic()
        content = b"x" * size if declared else chunked(size)
        response = httpx.post(f"{stack.gateway}/v1/chat/completions", content=content, headers=AUTH, timeout=15)
        elapsed = time.monotonic() - started
        assert elapsed < 5, (size, elapsed)
        if size > limit:
            assert response.status_code == 413, (size, response.text)
            assert response.json()["error"]["code"] == "request_too_large"
        else:  # delivered whole to extproc, which finds no JSON in it
            assert response.status_code == 400, (size, response.text)


def test_a_chunked_multi_mib_request_is_served(stack: RunningStack) -> None:
    image = "data:image/png;base64," + "A" * (6 * MIB)
    body = orjson.dumps(
        {
            "model": VL,
            "max_tokens": 2,
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}}]}],
        }
    )
    response = httpx.post(
        f"{stack.gateway}/v1/chat/completions", content=iter([body[:MIB], body[MIB:]]), headers=AUTH, timeout=15
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("server", "status", "code"),
    [
        ("serve authz", 503, "authorization_unavailable"),
        ("serve extproc", 504, "gateway_error"),
        ("serve epp", 504, "gateway_error"),
    ],
)
def test_a_stalled_plugin_server_gives_a_json_error_not_a_hang(
    stack: RunningStack, server: str, status: int, code: str
) -> None:
    pid = stack.child_pid(server)
    os.kill(pid, signal.SIGSTOP)
    try:
        response, elapsed = post(stack, CHAT)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert elapsed < 5  # bounded by the ext_authz (1 s) and ext_proc message (2 s) timeouts
    assert post(stack, CHAT)[0].status_code == 200  # and it recovers by itself


def test_no_reachable_worker_is_503_json(tmp_path: Path) -> None:
    stack = start_stack(stack_config(tmp_path), extra_args=("--engine", "none"))
    try:
        response, _ = post(stack, CHAT)
    finally:
        assert stack.stop() == 0, stack.log()
    assert response.status_code == 503, f"{response.text}\n{stack.log()}"
    assert response.headers["content-type"] == "application/json"
    # The picker never sends a request to a worker whose metrics it cannot read: the 503 is the picker's own.
    assert response.json()["error"]["code"] == "no_healthy_endpoint"
