"""What vLLM's prefix-cache metrics mean, measured, for the picker's prefix scorer.

vLLM caches the KV of whole blocks (``vllm:cache_config_info{block_size}``; 128 tokens on CPU) and counts in tokens:
``vllm:prefix_cache_queries_total`` grows by each prompt's length, ``vllm:prefix_cache_hits_total`` by the tokens of
the whole blocks found cached. A repeated prompt hits every whole block but the one holding its last token (that
token is always computed again); a shared prefix shorter than one block never counts as a hit.
"""

from __future__ import annotations

import random

import httpx
import openai

from tests.helpers import metric
from tests.vllm.load import complete, random_prompt
from tests.vllm.metrics import info_labels, scrape
from tests.vllm.server import VllmServer

HITS = "vllm:prefix_cache_hits_total"
QUERIES = "vllm:prefix_cache_queries_total"


async def test_a_repeated_prompt_hits_its_whole_blocks(vllm: VllmServer) -> None:
    async with (
        httpx.AsyncClient(timeout=30) as http,
        openai.AsyncOpenAI(base_url=f"{vllm.url}/v1", api_key="unused", max_retries=0, timeout=120) as client,
    ):
        before = await scrape(http, vllm.metrics_url)
        cache = info_labels(before, "vllm:cache_config_info")
        assert cache["enable_prefix_caching"] == "True", cache
        block = int(cache["block_size"])
        whole_blocks = 3
        prompt = random_prompt(random.Random(7), whole_blocks * block + 10)  # unseen: nothing cached yet

        first = await complete(client, prompt, max_tokens=1)
        middle = await scrape(http, vllm.metrics_url)
        second = await complete(client, prompt, max_tokens=1)
        after = await scrape(http, vllm.metrics_url)

    assert metric(middle, QUERIES) - metric(before, QUERIES) == len(prompt)
    assert metric(middle, HITS) - metric(before, HITS) == 0
    assert metric(after, QUERIES) - metric(middle, QUERIES) == len(prompt)
    assert metric(after, HITS) - metric(middle, HITS) == whole_blocks * block
    # The client sees the same number (vLLM's --enable-prompt-tokens-details).
    details = [reply.usage.prompt_tokens_details if reply.usage else None for reply in (first, second)]
    assert [detail.cached_tokens if detail else None for detail in details] == [0, whole_blocks * block]
