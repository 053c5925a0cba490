"""Reading Prometheus text from vLLM, extproc and epp in these tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx

from tests.helpers import metric_samples


def info_labels(text: str, name: str) -> dict[str, str]:
    """The labels of an info-style metric such as ``vllm:cache_config_info``."""
    for (found, labels), _ in metric_samples(text).items():
        if found == name:
            return dict(labels)
    raise AssertionError(f"{name} is not exported")


async def scrape(http: httpx.AsyncClient, url: str) -> str:
    response = await http.get(url)
    response.raise_for_status()
    return response.text


async def scrape_until(http: httpx.AsyncClient, url: str, done: Callable[[str], bool], timeout_s: float = 20.0) -> str:
    """The metrics once ``done`` holds for them, else the last ones read after ``timeout_s``: the assertions that
    follow then show the numbers that differ. For counters written just after a response ends, off its path."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = await scrape(http, url)
        if done(text) or time.monotonic() > deadline:
            return text
        await asyncio.sleep(0.2)
