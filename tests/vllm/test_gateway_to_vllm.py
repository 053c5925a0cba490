"""Requests through the real gateway reach the real vLLM and are metered exactly as vLLM itself counted them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import httpx
import openai
import pytest
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletionMessageParam

from tests.helpers import metric
from tests.integration.stack import RunningStack, tenant_usage
from tests.vllm.config import POOL, PRICES
from tests.vllm.load import IGNORE_EOS
from tests.vllm.metrics import scrape, scrape_until
from tests.vllm.server import SERVED_MODEL, VllmServer
from tokenlabs.v1 import usage_pb2

PRO_KEY = "tlabs_pro_demo_key_change_me"
TENANT = "pro-demo"
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello to the gateway."}]
COMPLETION_TOKENS = 12
REQUESTS = 3


@pytest.fixture
async def client(stack: RunningStack) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{stack.gateway}/v1", api_key=PRO_KEY, max_retries=0, timeout=120) as sdk:
        yield sdk


async def stream_chat(client: openai.AsyncOpenAI, include_usage: bool) -> tuple[str, CompletionUsage | None, int]:
    """The text, the usage chunk's usage (None if none came) and how many usage chunks came."""
    stream = await client.chat.completions.create(
        model=SERVED_MODEL,
        messages=HELLO,
        max_tokens=COMPLETION_TOKENS,
        stream=True,
        stream_options={"include_usage": True} if include_usage else openai.omit,
        extra_body=IGNORE_EOS,
    )
    text, usage, usage_chunks = "", None, 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage is not None:
            assert not chunk.choices, "vLLM sends usage in a chunk of its own, after the last choice"
            usage, usage_chunks = chunk.usage, usage_chunks + 1
    return text, usage, usage_chunks


def ledger(stack: RunningStack) -> usage_pb2.ModelUsage:
    """The tenant's totals for the model in extproc's usage service (what ``tokenlabs usage`` prints); zeros
    while extproc has served the tenant nothing (NOT_FOUND)."""
    none = usage_pb2.ModelUsage(model=SERVED_MODEL)
    try:
        usage = tenant_usage(stack, TENANT)
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return none
    return next((model for model in usage.models if model.model == SERVED_MODEL), none)


async def test_chat_through_the_gateway_reaches_vllm_and_is_metered(
    stack: RunningStack, vllm: VllmServer, client: openai.AsyncOpenAI
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        worker_before = await scrape(http, vllm.metrics_url)
        gateway_before = await scrape(http, stack.metrics_url("extproc"))
        picker_before = await scrape(http, stack.metrics_url("epp"))
        ledger_before = await asyncio.to_thread(ledger, stack)

        reply = await client.chat.completions.create(
            model=SERVED_MODEL, messages=HELLO, max_tokens=COMPLETION_TOKENS, extra_body=IGNORE_EOS
        )
        streamed, streamed_usage, usage_chunks = await stream_chat(client, include_usage=True)
        # extproc asks vLLM for usage in this one's place and must take the usage chunk out again.
        unasked, unasked_usage, unasked_usage_chunks = await stream_chat(client, include_usage=False)

        assert reply.model == SERVED_MODEL and reply.choices[0].message.content
        usage = reply.usage
        assert usage is not None and usage.prompt_tokens > 0
        assert usage.completion_tokens == COMPLETION_TOKENS
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
        assert streamed and usage_chunks == 1 and streamed_usage is not None
        assert (streamed_usage.prompt_tokens, streamed_usage.completion_tokens, streamed_usage.total_tokens) == (
            usage.prompt_tokens,
            COMPLETION_TOKENS,
            usage.total_tokens,
        )
        assert unasked and unasked_usage is None and unasked_usage_chunks == 0
        prompt_tokens, completion_tokens = REQUESTS * usage.prompt_tokens, REQUESTS * COMPLETION_TOKENS

        def delta(before: str, after: str, name: str, **labels: str) -> float:
            return metric(after, name, **labels) - metric(before, name, **labels)

        worker_after = await scrape_until(
            http,
            vllm.metrics_url,
            lambda text: delta(worker_before, text, "vllm:request_success_total") >= REQUESTS,
        )
        assert delta(worker_before, worker_after, "vllm:request_success_total", finished_reason="length") == REQUESTS
        assert delta(worker_before, worker_after, "vllm:prompt_tokens_total") == prompt_tokens
        assert delta(worker_before, worker_after, "vllm:generation_tokens_total") == completion_tokens

        mine = {"tenant": TENANT, "model": SERVED_MODEL}
        gateway_after = await scrape_until(
            http,
            stack.metrics_url("extproc"),
            lambda text: delta(gateway_before, text, "tokenlabs_requests_total", **mine) >= REQUESTS,
        )
        assert delta(gateway_before, gateway_after, "tokenlabs_requests_total", **mine, code="200") == REQUESTS
        assert delta(gateway_before, gateway_after, "tokenlabs_tokens_total", **mine, kind="prompt") == prompt_tokens
        assert (
            delta(gateway_before, gateway_after, "tokenlabs_tokens_total", **mine, kind="completion")
            == completion_tokens
        )
        assert delta(gateway_before, gateway_after, "tokenlabs_usage_missing_total", **mine) == 0
        cost = (prompt_tokens * PRICES["input"] + completion_tokens * PRICES["output"]) / 1_000_000
        assert delta(gateway_before, gateway_after, "tokenlabs_cost_usd_total", **mine) == pytest.approx(cost)

        after = await asyncio.to_thread(ledger, stack)
        assert (
            after.requests - ledger_before.requests,
            after.prompt_tokens - ledger_before.prompt_tokens,
            after.completion_tokens - ledger_before.completion_tokens,
        ) == (REQUESTS, prompt_tokens, completion_tokens)

        picker_after = await scrape(http, stack.metrics_url("epp"))
        picks = delta(picker_before, picker_after, "tokenlabs_epp_picks_total", pool=POOL, endpoint=vllm.endpoint)
        assert picks == REQUESTS, f"epp picked {vllm.endpoint} {picks} times for {REQUESTS} requests"
