"""Tokens reach the client through the gateway as the worker produces them, not when the response ends."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.integration.stack import stack_config, start_stack

ITL_MS = 40
TOKENS = 12


def test_chunks_arrive_at_the_workers_pace(tmp_path: Path) -> None:
    stack = start_stack(stack_config(tmp_path, sim={"ttft_base_ms": 5, "itl_ms": ITL_MS, "itl_batch_factor": 0}))
    body = {
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "messages": [{"role": "user", "content": "count"}],
        "stream": True,
        "max_tokens": TOKENS,
    }
    arrivals = []
    try:
        with httpx.stream(
            "POST",
            f"{stack.gateway}/v1/chat/completions",
            json=body,
            headers={"authorization": "Bearer tlabs_pro_demo_key_change_me"},
            timeout=30,
        ) as response:
            started = time.monotonic()
            for line in response.iter_lines():
                if '"content":"' in line and '"content":""' not in line:
                    arrivals.append(time.monotonic() - started)
    finally:
        assert stack.stop() == 0
    assert len(arrivals) == TOKENS
    total = arrivals[-1]
    # Buffering anywhere would deliver every token at once, at the end.
    assert arrivals[0] < total / 3, arrivals
    assert total >= (TOKENS - 1) * ITL_MS / 1000 * 0.8, arrivals
