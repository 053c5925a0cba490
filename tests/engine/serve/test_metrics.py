"""The worker's vLLM metrics: token and request counters equal what clients were told, and the spec-decode counters
equal the decoders' own statistics."""

from __future__ import annotations

from typing import Any

import aiohttp

from engine.serve.model import LoadedModel
from engine.serve.options import ServeOptions
from tests.engine.serve.support import MAX_MODEL_LEN, MODEL, OPTIONS, Decoders, served_worker
from tests.helpers import metric, metric_samples

# Repetitive prompts, on which the tiny random model repeats itself too (a random model copies nothing from an
# ordinary prompt): prompt lookup then drafts from the prompt and from what the model wrote, and is accepted.
REPETITIVE = "roup" * 16
REQUESTS: list[dict[str, Any]] = [
    {"model": MODEL, "prompt": REPETITIVE, "max_tokens": 24, "temperature": 0, "ignore_eos": True},
    {"model": MODEL, "prompt": "def main():\n    return 0\n", "max_tokens": 8, "temperature": 0},
    {"model": MODEL, "prompt": "args" * 16, "max_tokens": 16, "temperature": 0.8, "seed": 1},
]


async def run_requests(
    model: LoadedModel, http: aiohttp.ClientSession, options: ServeOptions = OPTIONS
) -> tuple[Decoders, list[dict[str, Any]], str]:
    decoders = Decoders()
    async with served_worker(model, decoders, options) as (_, url):
        answers = []
        for body in REQUESTS:
            async with http.post(url + "/v1/completions", json=body) as response:
                assert response.status == 200
                answers.append(await response.json())
        async with http.get(url + "/metrics") as response:
            assert response.headers["content-type"].startswith("text/plain")
            text = await response.text()
    return decoders, answers, text


async def test_counters_and_histograms_match_the_requests(tiny_model: LoadedModel, http: aiohttp.ClientSession) -> None:
    decoders, answers, text = await run_requests(tiny_model, http)

    usages = [answer["usage"] for answer in answers]
    reasons = [answer["choices"][0]["finish_reason"] for answer in answers]
    assert metric(text, "vllm:prompt_tokens_total", model_name=MODEL) == sum(u["prompt_tokens"] for u in usages)
    assert metric(text, "vllm:generation_tokens_total") == sum(u["completion_tokens"] for u in usages)
    for reason in ("stop", "length"):
        assert metric(text, "vllm:request_success_total", finished_reason=reason) == reasons.count(reason)
    for histogram in ("time_to_first_token", "e2e_request_latency", "request_queue_time"):
        assert metric(text, f"vllm:{histogram}_seconds_count") == len(REQUESTS), histogram
    # One inter-token observation per step after the prefill, however many tokens the step added.
    assert metric(text, "vllm:inter_token_latency_seconds_count") == decoders.total_stats().steps
    (config,) = [labels for (name, labels), _ in metric_samples(text).items() if name == "vllm:cache_config_info"]
    assert dict(config) == {"block_size": "1", "num_gpu_blocks": str(MAX_MODEL_LEN), "enable_prefix_caching": "False"}


async def test_spec_decode_counters_are_the_decoders_statistics(
    tiny_model: LoadedModel, http: aiohttp.ClientSession
) -> None:
    decoders, _, text = await run_requests(tiny_model, http)

    stats = decoders.total_stats()
    assert metric(text, "vllm:spec_decode_num_drafts_total", model_name=MODEL) == stats.drafts
    assert metric(text, "vllm:spec_decode_num_draft_tokens_total") == stats.draft_tokens
    assert metric(text, "vllm:spec_decode_num_accepted_tokens_total") == stats.accepted_tokens
    assert metric(text, "vllm:spec_decode_num_accepted_tokens_per_pos_total") == stats.accepted_tokens
    first = metric(text, "vllm:spec_decode_num_accepted_tokens_per_pos_total", position="0")
    second = metric(text, "vllm:spec_decode_num_accepted_tokens_per_pos_total", position="1")
    assert first >= second  # a token is kept only after every one before it
    # Lookup drafts on the repetitive prompt, and the model keeps most of them.
    assert decoders.made[0].stats.acceptance_rate > 0.5


async def test_without_a_drafter_nothing_is_drafted(tiny_model: LoadedModel, http: aiohttp.ClientSession) -> None:
    options = ServeOptions(**{**vars(OPTIONS), "spec_mode": "none"})
    decoders, answers, text = await run_requests(tiny_model, http, options)

    assert metric(text, "vllm:spec_decode_num_drafts_total") == 0
    assert metric(text, "vllm:spec_decode_num_draft_tokens_total") == 0
    # One token per step: every step after the prefill added exactly one.
    completion_tokens = sum(answer["usage"]["completion_tokens"] for answer in answers)
    assert decoders.total_stats().steps == completion_tokens - len(REQUESTS)
