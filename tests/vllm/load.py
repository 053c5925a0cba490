"""Requests of an exact size for the tiny model.

Prompts are lists of token ids (vLLM's ``/v1/completions`` takes them as the OpenAI API allows), so a prompt's length
is exact whatever the tokenizer makes of text. ``ignore_eos`` is vLLM's own option: a random-weight model may emit
its end token anywhere, and every request here is to produce exactly ``max_tokens``.
"""

from __future__ import annotations

import asyncio
import random

import openai
from openai.types import Completion

from tests.vllm.server import SERVED_MODEL

# Ids 0-2 are the special tokens (begin, end, pad) of the model ``make_model.py`` makes.
FIRST_ORDINARY_TOKEN = 3
VOCABULARY = 2048
IGNORE_EOS = {"ignore_eos": True}


def random_prompt(rng: random.Random, tokens: int) -> list[int]:
    return [rng.randrange(FIRST_ORDINARY_TOKEN, VOCABULARY) for _ in range(tokens)]


async def complete(client: openai.AsyncOpenAI, prompt: list[int], max_tokens: int) -> Completion:
    return await client.completions.create(
        model=SERVED_MODEL, prompt=prompt, max_tokens=max_tokens, extra_body=IGNORE_EOS
    )


async def wave(
    client: openai.AsyncOpenAI, rng: random.Random, requests: int, prompt_tokens: int, max_tokens: int
) -> list[Completion]:
    """``requests`` at once, each with a prompt of its own (no prefix-cache hits to shorten their prefill)."""
    prompts = [random_prompt(rng, prompt_tokens) for _ in range(requests)]
    return await asyncio.gather(*(complete(client, prompt, max_tokens) for prompt in prompts))
