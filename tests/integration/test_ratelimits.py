"""Request-rate limits through the real gateway: OpenAI's headers on every answer, the 11th free request is 429."""

from __future__ import annotations

import httpx

from tests.integration.stack import RunningStack, add_tenant

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"


def chat(stack: RunningStack, key: str) -> httpx.Response:
    return httpx.post(
        f"{stack.gateway}/v1/chat/completions",
        json={"model": LLAMA, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )


def test_the_free_tiers_eleventh_request_in_a_minute_is_429_with_headers(stack: RunningStack) -> None:
    _, key = add_tenant(stack, "free")
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
