"""The gateway's config for the real-vLLM tests: the shipped one plus a model served by the real vLLM."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.vllm.server import SERVED_MODEL

POOL = "vllm"
# USD per million tokens, so that the cost counter has something to count.
PRICES = {"input": 1.0, "output": 2.0}


def with_vllm_model(config_path: Path, endpoint: str) -> None:
    """Add the model ``tiny-llama`` on pool ``vllm`` (the real server at ``endpoint``) to a stack config, and to
    every tier that lists its models."""
    document = yaml.safe_load(config_path.read_text())
    document["models"][SERVED_MODEL] = {
        "pool": POOL,
        "input_usd_per_1m_tokens": PRICES["input"],
        "output_usd_per_1m_tokens": PRICES["output"],
    }
    document["pools"][POOL] = {"endpoints": [endpoint]}
    for tier in document["tiers"].values():
        if "models" in tier:
            tier["models"].append(SERVED_MODEL)
    config_path.write_text(yaml.safe_dump(document, sort_keys=False))
