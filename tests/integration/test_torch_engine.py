"""The demo Llama pool served by the torch engine (`tokenlabs dev --engine torch`, the tiny model) behind the real
gateway: Envoy → authz → extproc → epp → `tokenlabs engine serve`, with the gateway's metering and the picker's
scrapes agreeing with the worker's own vLLM metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import openai
import pytest
import yaml
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletionMessageParam

from engine.spec.models.tiny import ensure_tiny
from tests.engine.serve.support import TINY
from tests.helpers import metric, sample
from tests.integration.stack import RunningStack, stack_config, start_stack
from tests.vllm.metrics import scrape, scrape_until

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
PRO_KEY = "tlabs_pro_demo_key_change_me"
TENANT = "pro-demo"
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello to the gateway."}]
COMPLETION_TOKENS = 6
# Exact lengths whatever the random model writes; temperature 0 so that the three answers are the same text.
FIXED_LENGTH = {"ignore_eos": True}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The shipped config on free ports with the llama pool cut to one endpoint (one torch worker is enough, and
    each costs a torch start-up on these two cores); the other pools stay on the simulator."""
    workdir = tmp_path_factory.mktemp("torch-stack")
    model_dir = ensure_tiny(workdir / "tiny-llama", TINY)
    config_path = stack_config(workdir)
    document = yaml.safe_load(config_path.read_text())
    document["pools"]["llama"]["endpoints"] = document["pools"]["llama"]["endpoints"][:1]
    config_path.write_text(yaml.safe_dump(document, sort_keys=False))
    engine = ("--engine", "torch", "--engine-model", "tiny", "--engine-model-dir", str(model_dir))
    running = start_stack(config_path, timeout=120.0, extra_args=engine)
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture
async def client(stack: RunningStack) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{stack.gateway}/v1", api_key=PRO_KEY, max_retries=0, timeout=60) as sdk:
        yield sdk


async def stream_chat(client: openai.AsyncOpenAI, include_usage: bool) -> tuple[str, list[CompletionUsage]]:
    stream = await client.chat.completions.create(
        model=LLAMA,
        messages=HELLO,
        max_tokens=COMPLETION_TOKENS,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True} if include_usage else openai.omit,
        extra_body=FIXED_LENGTH,
    )
    text, usages = "", []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage is not None:
            usages.append(chunk.usage)
    return text, usages


async def test_chat_through_the_gateway_is_served_metered_and_scraped(
    stack: RunningStack, client: openai.AsyncOpenAI
) -> None:
    (endpoint,) = stack.endpoints("llama")
    worker_metrics = f"http://{endpoint}/metrics"
    async with httpx.AsyncClient(timeout=30) as http:
        worker_before = await scrape(http, worker_metrics)
        gateway_before = await scrape(http, stack.metrics_url("extproc"))
        picker_before = await scrape(http, stack.metrics_url("epp"))

        reply = await client.chat.completions.create(
            model=LLAMA, messages=HELLO, max_tokens=COMPLETION_TOKENS, temperature=0, extra_body=FIXED_LENGTH
        )
        streamed, usages = await stream_chat(client, include_usage=True)
        # extproc asks the worker for usage in this one's place and takes the usage chunk out again.
        unasked, unasked_usages = await stream_chat(client, include_usage=False)

        usage = reply.usage
        assert reply.model == LLAMA and usage is not None and usage.prompt_tokens > 0
        assert usage.completion_tokens == COMPLETION_TOKENS
        assert reply.choices[0].message.content == streamed == unasked
        assert [(u.prompt_tokens, u.completion_tokens) for u in usages] == [(usage.prompt_tokens, COMPLETION_TOKENS)]
        assert unasked_usages == []

        def delta(before: str, after: str, name: str, **labels: str) -> float:
            return metric(after, name, **labels) - metric(before, name, **labels)

        worker_after = await scrape(http, worker_metrics)
        assert delta(worker_before, worker_after, "vllm:request_success_total", finished_reason="length") == 3
        assert delta(worker_before, worker_after, "vllm:generation_tokens_total") == 3 * COMPLETION_TOKENS
        assert delta(worker_before, worker_after, "vllm:prompt_tokens_total") == 3 * usage.prompt_tokens
        assert sample(worker_after, "vllm:spec_decode_num_draft_tokens_total") is not None

        mine = {"tenant": TENANT, "model": LLAMA}
        gateway_after = await scrape_until(
            http,
            stack.metrics_url("extproc"),
            lambda text: delta(gateway_before, text, "tokenlabs_requests_total", **mine) >= 3,
        )
        for kind, worker_counter in (
            ("completion", "vllm:generation_tokens_total"),
            ("prompt", "vllm:prompt_tokens_total"),
        ):
            metered = delta(gateway_before, gateway_after, "tokenlabs_tokens_total", **mine, kind=kind)
            assert metered == delta(worker_before, worker_after, worker_counter), kind
        assert delta(gateway_before, gateway_after, "tokenlabs_usage_missing_total", **mine) == 0

        picker_after = await scrape(http, stack.metrics_url("epp"))
        where = {"pool": "llama", "endpoint": endpoint}
        assert delta(picker_before, picker_after, "tokenlabs_epp_picks_total", **where) == 3
        # (Scrapes failed while the worker was loading the model, before the stack was ready; none since.)
        assert delta(picker_before, picker_after, "tokenlabs_epp_scrapes_total", **where, result="ok") > 0
        assert delta(picker_before, picker_after, "tokenlabs_epp_scrapes_total", **where, result="error") == 0
        assert sample(picker_after, "tokenlabs_epp_endpoint_ready", **where) == 1
