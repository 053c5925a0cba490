"""Request-rate limits through the real gateway: OpenAI's headers on every answer, the 11th free request is 429."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import yaml

from tests.integration.stack import RunningStack

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"


def add_tenant(stack: RunningStack, tier: str) -> str:
    """A fresh tenant (fresh counters) applied as a Secret file; returns its key once it is live."""
    name = f"rl-{uuid.uuid4().hex[:8]}"
    key = f"tlabs_sk_{uuid.uuid4().hex}"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"tenant-{name}",
            "namespace": "kuadrant-system",
            "labels": {"authorino.kuadrant.io/managed-by": "authorino"},
            "annotations": {"kuadrant.io/groups": tier, "secret.kuadrant.io/user-id": name},
        },
        "stringData": {"api_key": key},
    }
    before = tenants_loaded(stack)
    (Path(stack.config["tenants"]["directory"]) / f"tenant-{name}.yaml").write_text(yaml.safe_dump(secret))
    deadline = time.monotonic() + 1.0  # the directory source promises a change within 1 s
    while tenants_loaded(stack) <= before:
        assert time.monotonic() < deadline, "the new tenant was not live within 1 s"
        time.sleep(0.05)
    return key


def tenants_loaded(stack: RunningStack) -> float:
    for line in httpx.get(stack.metrics_url("authz")).text.splitlines():
        if line.startswith("tokenlabs_authz_tenants_loaded"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("tokenlabs_authz_tenants_loaded is not exported")


def chat(stack: RunningStack, key: str) -> httpx.Response:
    return httpx.post(
        f"{stack.gateway}/v1/chat/completions",
        json={"model": LLAMA, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )


def test_the_free_tiers_eleventh_request_in_a_minute_is_429_with_headers(stack: RunningStack) -> None:
    key = add_tenant(stack, "free")
    remaining = []
    for _ in range(10):
        response = chat(stack, key)
        assert response.status_code == 200, response.text
        assert response.headers["x-ratelimit-limit-requests"] == "10"
        remaining.append(int(response.headers["x-ratelimit-remaining-requests"]))
        assert response.headers["x-ratelimit-reset-requests"]
    assert remaining == list(range(9, -1, -1))
    refused = chat(stack, key)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-limit-requests"] == "10"
