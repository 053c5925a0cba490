"""The real openai SDK talks to the worker as it would to vLLM."""

from collections.abc import AsyncIterator

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from engine.sim.tokens import ChatMessage, TextPart, chat_prompt_tokens, tokenize
from engine.sim.worker import SimWorker
from tests.engine.sim.support import FAST_CONFIG, instant_sleep, served

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name three colours."},
]
EXPECTED_PROMPT_TOKENS = len(
    chat_prompt_tokens(
        [ChatMessage("system", (TextPart("You are terse."),)), ChatMessage("user", (TextPart("Name three colours."),))]
    )
)


@pytest.fixture
async def client() -> AsyncIterator[openai.AsyncOpenAI]:
    async with (
        served(SimWorker(("sim-llama",), FAST_CONFIG, sleep=instant_sleep)) as base,
        openai.AsyncOpenAI(base_url=base + "/v1", api_key="x", max_retries=0) as sdk_client,
    ):
        yield sdk_client


async def test_chat_non_streaming(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(model="sim-llama", messages=MESSAGES)

    assert completion.object == "chat.completion"
    content = completion.choices[0].message.content
    assert content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == EXPECTED_PROMPT_TOKENS
    assert completion.usage.completion_tokens == len(tokenize(content)) == FAST_CONFIG.output_tokens


async def test_chat_streaming_usage_matches_what_was_streamed(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="sim-llama",
        messages=MESSAGES,
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces = []
    finish_reasons = []
    usage = None
    async for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish_reasons.append(choice.finish_reason)
        if chunk.usage is not None:
            usage = chunk.usage

    assert finish_reasons == ["length"]
    assert usage is not None
    assert usage.completion_tokens == len(pieces) == 3
    assert usage.prompt_tokens == EXPECTED_PROMPT_TOKENS
    assert usage.total_tokens == EXPECTED_PROMPT_TOKENS + 3


async def test_legacy_completions(client: openai.AsyncOpenAI) -> None:
    completion = await client.completions.create(model="sim-llama", prompt="Say hi", max_tokens=2)

    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (2, 2)


async def test_models_and_errors_map_to_sdk_types(client: openai.AsyncOpenAI) -> None:
    models = [model.id async for model in client.models.list()]
    assert models == ["sim-llama"]

    with pytest.raises(openai.NotFoundError) as not_found:
        await client.chat.completions.create(model="other", messages=MESSAGES)
    assert not_found.value.code == "model_not_found"

    with pytest.raises(openai.BadRequestError) as bad_request:
        await client.chat.completions.create(model="sim-llama", messages=[])
    assert bad_request.value.param == "messages"
