"""A pool of simulated vLLM workers for the routing benchmark: one ``tokenlabs engine sim`` process, N ports.

Each run gets a fresh process, so every policy starts from empty KV caches and zeroed counters.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp

from epp.metrics.text_format import samples
from tokenlabs.devstack import free_ports

MODEL = "bench/shared-prefix-8b"
HITS_AND_QUERIES = ("vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total")

# A slow, prefill-bound worker: ≈5k prompt tokens/s, 8 ms decode steps, 16 slots, a 16k-token KV cache (about ten
# system prompts of the default workload), prefix caching on.
SIM_KNOBS: Mapping[str, object] = {
    "ttft_base_ms": 5,
    "ttft_per_prompt_token_ms": 0.2,
    "itl_ms": 8,
    "itl_batch_factor": 0.05,
    "max_num_seqs": 16,
    "max_num_batched_tokens": 2048,
    "num_kv_blocks": 1024,
    "block_size": 16,
}


@dataclass
class SimPool:
    process: subprocess.Popen[bytes]
    endpoints: tuple[str, ...]

    @classmethod
    def launch(cls, size: int, knobs: Mapping[str, object] = SIM_KNOBS) -> SimPool:
        """Start the process; ``wait_healthy`` before sending requests."""
        endpoints = tuple(f"127.0.0.1:{port}" for port in free_ports(size))
        argv = [sys.executable, "-m", "tokenlabs", "engine", "sim"]
        for endpoint in endpoints:
            argv += ["--worker", f"{MODEL}={endpoint}"]
        for key, value in knobs.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        return cls(process, endpoints)

    async def wait_healthy(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            for endpoint in self.endpoints:
                while True:
                    if self.process.poll() is not None:
                        error = self.process.stderr.read().decode() if self.process.stderr else ""
                        raise RuntimeError(f"the simulator exited: {error[-2000:]}")
                    try:
                        async with session.get(f"http://{endpoint}/health") as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"simulated worker {endpoint} not healthy after {timeout_s:g} s")
                    await asyncio.sleep(0.05)

    async def counters(self, names: Sequence[str]) -> dict[str, float]:
        """Each counter summed over the pool."""
        totals = dict.fromkeys(names, 0.0)
        async with aiohttp.ClientSession() as session:
            for endpoint in self.endpoints:
                async with session.get(f"http://{endpoint}/metrics") as response:
                    text = await response.text()
                for sample in samples(text, frozenset(names)):
                    totals[sample.name] += sample.value
        return totals

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()
