"""The targets under test: plain Envoy, stages of the gateway's filter chain, and the full chain.

Intermediate stages are the rendered production bootstrap with filters dropped, so that a stage differs from the
full chain only by what it leaves out (same listener, buffer limits, header stripping, local replies).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.stack_config import MODEL
from tokenlabs.devstack import Child, envoy_child, free_ports
from tokenlabs.picker_settings import Endpoint
from tokenlabs.settings import Settings

AUTHZ = "envoy.filters.http.ext_authz"
EXTPROC = "tokenlabs.extproc"
ROUTER = "envoy.filters.http.router"
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
CHAT_PATH = "/v1/chat/completions"
# Per-request plugin traffic as Envoy counts it: checks, ext_proc streams (one per ext_proc filter) and messages.
ENVOY_CALL_COUNTERS = (
    "ext_authz.ok",
    "ext_proc.streams_started",
    "ext_proc.stream_msgs_sent",
    "ext_proc.stream_msgs_received",
)


@dataclass(frozen=True)
class StageSpec:
    """A cut of the chain: the HTTP filters kept; ``model_routing`` keeps the routes on the model header."""

    filters: tuple[str, ...]
    model_routing: bool


# Without extproc nobody sets the model header, so authz_only routes everything to the model's pool.
PARTIAL_STAGES: Mapping[str, StageSpec] = {
    "authz_only": StageSpec((AUTHZ,), model_routing=False),
    "authz_extproc": StageSpec((AUTHZ, EXTPROC), model_routing=True),
}
STAGES = ("plain_envoy", *PARTIAL_STAGES, "full_chain")


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    admin_url: str
    envoy: Child  # its process is set once the stack has started

    @property
    def envoy_pid(self) -> int:
        assert self.envoy.process is not None, "the stack has not started"
        return self.envoy.process.pid


def static_cluster(name: str, endpoints: tuple[Endpoint, ...]) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [lb_endpoint(e) for e in endpoints]}],
        },
    }


def _as_static(pool: Mapping[str, Any], endpoints: tuple[Endpoint, ...]) -> dict[str, Any]:
    """A pool without its picker: same name and buffer limit, fixed endpoints, round robin."""
    static = static_cluster(pool["name"], endpoints)
    if "per_connection_buffer_limit_bytes" in pool:
        static["per_connection_buffer_limit_bytes"] = pool["per_connection_buffer_limit_bytes"]
    return static


def lb_endpoint(endpoint: Endpoint) -> dict[str, Any]:
    return {"endpoint": {"address": {"socket_address": {"address": endpoint.host, "port_value": endpoint.port}}}}


def _socket(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def plain_bootstrap(port: int, admin_port: int, worker: Endpoint) -> dict[str, Any]:
    """Listener → router → one worker: the floor that every gateway feature is measured against."""
    manager = {
        "@type": HCM,
        "stat_prefix": "plain",
        "codec_type": "AUTO",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "worker"}}],
                }
            ]
        },
        "http_filters": [{"name": ROUTER, "typed_config": {"@type": ROUTER_TYPE}}],
    }
    listener = {
        "name": "plain",
        "address": _socket(port),
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
        ],
    }
    return {
        "admin": {"address": _socket(admin_port)},
        "static_resources": {"listeners": [listener], "clusters": [static_cluster("worker", (worker,))]},
    }


def partial_bootstrap(
    full: Mapping[str, Any], spec: StageSpec, port: int, admin_port: int, settings: Settings
) -> dict[str, Any]:
    """The full bootstrap on other ports, keeping only ``spec.filters``; pools become STATIC clusters (no picker)."""
    bootstrap = copy.deepcopy(dict(full))
    bootstrap["admin"]["address"] = _socket(admin_port)
    listener = bootstrap["static_resources"]["listeners"][0]
    listener["address"] = _socket(port)
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    manager["http_filters"] = [f for f in manager["http_filters"] if f["name"] in (*spec.filters, ROUTER)]
    pools = {f"pool_{name}": pool.endpoints for name, pool in settings.pools.items()}
    bootstrap["static_resources"]["clusters"] = [
        _as_static(cluster, pools[cluster["name"]]) if cluster["name"] in pools else cluster
        for cluster in bootstrap["static_resources"]["clusters"]
    ]
    if not spec.model_routing:
        pool = f"pool_{settings.models[MODEL].pool}"
        route = {"match": {"prefix": "/"}, "route": {"cluster": pool}}
        manager["route_config"]["virtual_hosts"][0]["routes"] = [route]
    return bootstrap


def make_targets(
    names: tuple[str, ...], settings: Settings, full_envoy: Child, full_bootstrap: str, workdir: Path, concurrency: int
) -> list[Target]:
    """The targets in ``names``: the stack's own Envoy for full_chain, a new Envoy child for each other stage."""
    full = yaml.safe_load(full_bootstrap)
    worker = settings.pools[settings.models[MODEL].pool].endpoints[0]
    targets = []
    for name in names:
        if name == "full_chain":
            gateway = settings.gateway
            url, admin = f"http://{gateway.host}:{gateway.port}", f"http://{gateway.host}:{gateway.admin_port}"
            targets.append(Target(name, url + CHAT_PATH, admin, full_envoy))
            continue
        port, admin_port = free_ports(2)
        if name == "plain_envoy":
            bootstrap = plain_bootstrap(port, admin_port, worker)
        else:
            bootstrap = partial_bootstrap(full, PARTIAL_STAGES[name], port, admin_port, settings)
        config = workdir / f"envoy-{name}.yaml"
        config.write_text(yaml.safe_dump(bootstrap, sort_keys=False), encoding="utf-8")
        admin = f"http://127.0.0.1:{admin_port}"
        # Same flags as the stack's own Envoy, so that only the config differs between targets.
        child = envoy_child(f"envoy-{name}", config, admin, "warning", concurrency)
        targets.append(Target(name, f"http://127.0.0.1:{port}{CHAT_PATH}", admin, child))
    return targets


async def grpc_calls_per_request(target: Target) -> dict[str, float]:
    """Envoy's own count of plugin calls per downstream request (over the whole bench, warm-up included)."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.get(f"{target.admin_url}/stats", params={"usedonly": ""}) as response,
    ):
        text = await response.text()
    counters: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if name.startswith("http.") and value.isdigit():
            # "http.<stat_prefix>.ext_proc.streams_started" → "ext_proc.streams_started"
            suffix = name.split(".", 2)[2]
            counters[suffix] = counters.get(suffix, 0) + int(value)
    requests = max(1, counters.get("downstream_rq_total", 0))
    return {key: round(counters.get(key, 0) / requests, 2) for key in ENVOY_CALL_COUNTERS}
