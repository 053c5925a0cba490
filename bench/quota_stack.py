"""The processes the quota benchmark runs: the local stack on one real Redis with a second extproc replica, and
plain Envoy to the same workers beside it.

- Workers stream a fixed answer at a fixed pace: time to first token ``TTFT_MS`` whatever the prompt, then one
  token every ``ITL_MS`` however many requests run (``itl_batch_factor`` 0), ``STREAM_TOKENS`` tokens unless
  ``max_tokens`` says fewer, with more batch slots and KV blocks than any run uses, so nothing queues and every
  difference between the targets is what the gateway adds.
- Counters live in Redis (``quota_store``); authz counts requests there and both extproc replicas count tokens
  there. The failure mode is the shipped one (open), the timeout ``STORE_TIMEOUT_MS`` rather than the shipped
  250 ms. That timeout covers the replica's own waits, for the CPU and for one of its 64 pooled connections, and
  with 256 streams arriving at once on two shared cores some calls waited past 250 ms in 2 of 7 trial runs (Redis
  spent ≈25 µs per script: INFO commandstats); the replica then counted in its own memory and Redis missed those
  requests. 2 s is Envoy's ext_proc message timeout, past which the request fails anyway. The exactness run checks
  that no replica failed over.
- Every tier's limits are configured but out of reach (the pro demo tenant streams without refusals, each request
  still reserving and settling its tokens in Redis) except the free tier's tokens per minute,
  ``TOKENS_PER_MINUTE``, for the exactness run.
- The gateway's Envoy is the production bootstrap with one change: its extproc cluster lists the second replica
  beside the first, so that Envoy spreads ext_proc streams over both (round robin, one pick per stream).
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.stack_config import bench_document, write_document
from bench.stages import Target, lb_endpoint, make_targets
from tokenlabs.devstack import Child, Stack, StackOptions, envoy_child, free_ports, grpc_serving
from tokenlabs.envoy_config import render_bootstrap
from tokenlabs.picker_settings import Endpoint
from tokenlabs.server_settings import ServerSettings
from tokenlabs.settings import Settings, load

TTFT_MS = 20
ITL_MS = 10
STREAM_TOKENS = 64
STREAM_SIM: dict[str, Any] = {
    "ttft_base_ms": TTFT_MS,
    "ttft_per_prompt_token_ms": 0,
    "itl_ms": ITL_MS,
    "itl_batch_factor": 0,
    "output_tokens": STREAM_TOKENS,
    "max_num_seqs": 1024,
    "num_kv_blocks": 32768,
    "drain_seconds": 1,
}
STORE_TIMEOUT_MS = 2000
METERED_TIER = "free"
METERED_TENANT = "free-demo"  # manifests/examples/tenants/tenant-free-demo.yaml
METERED_KEY = "tlabs_free_demo_key_change_me"
TOKENS_PER_MINUTE = 8_000
EXTPROC_CLUSTER = "tokenlabs_extproc"
TARGETS = ("plain_envoy", "full_chain")


# What tokenlabs.quota.failover logs when a replica starts counting in its own memory.
FAILOVER_MESSAGE = "quota store unreachable"
# A warning or error of a plugin server (JSON logs), or an error of Envoy (whose warnings are start-up notices).
_WARNING = re.compile(r'"level":"(?:warning|error|critical)"|\]\[(?:error|critical)\]')


@dataclass
class LogWatch:
    """Keeps the warning and error lines of every child (the stack's ``echo``): a store timeout, a failed charge
    or an Envoy complaint explains numbers that would otherwise only be wrong."""

    lines: list[str] = field(default_factory=list)

    def __call__(self, line: str) -> None:
        if _WARNING.search(line):
            self.lines.append(line)

    def failovers(self, since: int = 0) -> int:
        """Lines from ``since`` on in which a server said it stopped counting in the shared store."""
        return sum(FAILOVER_MESSAGE in line for line in self.lines[since:])


@dataclass(frozen=True)
class QuotaStack:
    stack: Stack  # every process but Redis: start() and stop() it
    log: LogWatch
    settings: Settings
    targets: tuple[Target, ...]  # plain_envoy, full_chain
    extproc_replicas: tuple[str, ...]  # host:port of each extproc replica, as Envoy's admin names them

    @property
    def gateway(self) -> Target:
        return self.targets[-1]

    def worker_metrics_urls(self) -> list[str]:
        return [f"http://{e.address}/metrics" for pool in self.settings.pools.values() for e in pool.endpoints]

    def pids(self) -> dict[str, int]:
        """Root pid of every process of the stack, by name (for CPU sampling); valid once started."""
        return {child.name: child.process.pid for child in self.stack.children if child.process is not None}


def with_extproc_replica(bootstrap: Mapping[str, Any], replica: ServerSettings) -> dict[str, Any]:
    """A copy of the gateway bootstrap whose extproc cluster also lists ``replica``."""
    document = copy.deepcopy(dict(bootstrap))
    cluster = next(c for c in document["static_resources"]["clusters"] if c["name"] == EXTPROC_CLUSTER)
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"].append(
        lb_endpoint(Endpoint(replica.host, replica.grpc_port))
    )
    return document


def config_document(redis_url: str) -> dict[str, Any]:
    document = bench_document(sim=STREAM_SIM)
    document["quota_store"] = redis_url
    document["quota_store_timeout_ms"] = STORE_TIMEOUT_MS
    document["tiers"][METERED_TIER]["tokens_per_minute"] = TOKENS_PER_MINUTE
    return document


def build(workdir: Path, redis_url: str, envoy_concurrency: int) -> QuotaStack:
    """The stack's children, not started: authz, two extproc replicas, epp, workers, the gateway's Envoy and plain
    Envoy. The second replica runs from a copy of the config that moves only the extproc ports."""
    document = config_document(redis_url)
    settings = load(write_document(workdir / "tokenlabs.yaml", document))
    second = copy.deepcopy(document)
    grpc_port, metrics_port = free_ports(2)
    second["extproc"].update(grpc_port=grpc_port, metrics_port=metrics_port)
    second_config = write_document(workdir / "tokenlabs-extproc-2.yaml", second)
    replica = load(second_config).extproc
    assert settings.source is not None
    log = LogWatch()
    stack = Stack(settings, StackOptions(settings.source, envoy_concurrency=envoy_concurrency, echo=log))
    argv = [sys.executable, "-m", "tokenlabs", "serve", "extproc", "--config", str(second_config)]
    stack.children.insert(_index(stack, "extproc") + 1, Child("extproc-2", argv, grpc_serving(replica)))

    bootstrap = with_extproc_replica(yaml.safe_load(render_bootstrap(settings)), replica)
    gateway_config = workdir / "envoy-gateway.yaml"
    gateway_config.write_text(yaml.safe_dump(bootstrap, sort_keys=False), encoding="utf-8")
    gateway = settings.gateway
    admin_url = f"http://{gateway.host}:{gateway.admin_port}"
    gateway_envoy = envoy_child("envoy", gateway_config, admin_url, "warning", envoy_concurrency)
    stack.children[_index(stack, "envoy")] = gateway_envoy

    targets = make_targets(TARGETS, settings, gateway_envoy, render_bootstrap(settings), workdir, envoy_concurrency)
    stack.children.extend(target.envoy for target in targets if target.envoy is not gateway_envoy)
    replicas = (settings.extproc.grpc_address, replica.grpc_address)
    return QuotaStack(stack, log, settings, tuple(targets), replicas)


def _index(stack: Stack, name: str) -> int:
    return next(index for index, child in enumerate(stack.children) if child.name == name)
