"""The bench's own tokenlabs config: the shipped one on free ports, zero-latency workers, no quota in the way."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tokenlabs.devstack import on_free_ports

REPO = Path(__file__).resolve().parents[1]
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
PRO_KEY = "tlabs_pro_demo_key_change_me"
OUTPUT_TOKENS = 4
# Far above what any run can use: a 429 from a quota would measure the limiter, not the request path.
UNLIMITED = 10**12
QUOTA_KEYS = ("requests_per_minute", "requests_per_day", "tokens_per_minute", "tokens_per_day")
DEMO_TENANTS = REPO / "manifests/examples/tenants"
# Zero model latency, so a request's time is the gateway's own; more batch slots than connections, so the simulator
# never queues a request behind others.
ZERO_LATENCY_SIM: dict[str, Any] = {
    "ttft_base_ms": 0,
    "ttft_per_prompt_token_ms": 0,
    "itl_ms": 0,
    "output_tokens": OUTPUT_TOKENS,
    "max_num_seqs": 256,
    "drain_seconds": 1,
}


def chat_body() -> str:
    """The one request every target gets: small, non-streaming, a few output tokens."""
    message = {"role": "user", "content": "Say hello to the gateway."}
    return json.dumps({"model": MODEL, "messages": [message], "max_tokens": OUTPUT_TOKENS, "stream": False})


def bench_document(tenants: Path = DEMO_TENANTS, sim: Mapping[str, Any] = ZERO_LATENCY_SIM) -> dict[str, Any]:
    """The shipped config on free ports, tenants from the directory ``tenants``, every quota out of reach, plugin
    servers that drain in 1 s and simulated workers configured by ``sim``."""
    document = on_free_ports(yaml.safe_load((REPO / "tokenlabs.yaml").read_text(encoding="utf-8")))
    document["tenants"] = {"source": "directory", "directory": str(tenants)}
    for tier in document["tiers"].values():
        tier.update(dict.fromkeys(QUOTA_KEYS, UNLIMITED))
    for server in ("authz", "extproc", "epp"):
        document[server]["drain_seconds"] = 1
    document["engine"] = {"sim": dict(sim)}
    return document


def write_document(path: Path, document: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(document), sort_keys=False), encoding="utf-8")
    return path


def write_config(workdir: Path, tenants: Path = DEMO_TENANTS) -> Path:
    """Write ``tokenlabs.yaml`` for the bench into ``workdir`` (tenants from the directory ``tenants``) and return
    its path."""
    return write_document(workdir / "tokenlabs.yaml", bench_document(tenants))
