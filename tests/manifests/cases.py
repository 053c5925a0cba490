"""The value sets ``make chart-check`` renders, and the bad ones it expects Helm to refuse with a clear message."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Values = Mapping[str, Any]

GOOD: dict[str, Values] = {
    "defaults": {},
    "redis": {"redis": {"enabled": True}, "authz": {"replicas": 3}, "extproc": {"replicas": 2}, "epp": {"replicas": 2}},
    "external-redis": {
        "config": {"quota_store": "redis://redis.shared:6379/2", "quota_store_failure_mode": "closed"},
        "authz": {"replicas": 2},
        "extproc": {"replicas": 2},
    },
    "readme-production": {
        "redis": {"enabled": True},
        "authz": {"replicas": 3, "podDisruptionBudget": {"enabled": True, "minAvailable": 2}},
        "extproc": {"replicas": 2, "podDisruptionBudget": {"enabled": True, "minAvailable": 1}},
        "config": {
            "tenants": {"namespace": "kuadrant-system"},
            "models": {
                "meta-llama/Llama-3.1-8B-Instruct": {"pool": "vllm-llama"},
                "nvidia/NVIDIA-Nemotron-Nano-12B-v2-VL-FP8": None,
                "hexgrad/Kokoro-82M": None,
            },
            "pools": {
                "vllm-llama": {"selector": {"app": "vllm-llama"}, "target_port": 8000},
                "llama": None,
                "nemotron-vl": None,
                "speech": None,
            },
            "epp": {"saturation": {"mode": "shed"}},
        },
        "envoy": {"standalone": {"replicas": 3, "service": {"type": "LoadBalancer"}}},
        "monitoring": {"serviceMonitors": {"enabled": True}, "dashboard": {"enabled": True}},
    },
    "workers": {"workers": {"enabled": True}},
    "vllm-workers": {
        "workers": {
            "enabled": True,
            "deployments": [
                {
                    "pool": "llama",
                    "replicas": 2,
                    "engine": "vllm",
                    "model": "meta-llama/Llama-3.1-8B-Instruct",
                    "args": ["--max-model-len", "8192"],
                    "resources": {"limits": {"nvidia.com/gpu": 1}},
                }
            ],
        }
    },
    "monitoring": {
        "workers": {"enabled": True},
        "monitoring": {"serviceMonitors": {"enabled": True}, "dashboard": {"enabled": True}},
    },
    "gateway": {"envoy": {"mode": "gateway"}, "workers": {"enabled": True}},
    "gateway-shared": {
        "envoy": {
            "mode": "gateway",
            "gateway": {
                "createGateway": False,
                "parentRef": {"name": "shared", "namespace": "infra"},
                "hostnames": ["llm.example.com"],
            },
        },
        "monitoring": {"serviceMonitors": {"enabled": True}},
    },
    "no-envoy": {"envoy": {"mode": "none"}, "epp": {"podDisruptionBudget": {"enabled": False}}},
    "other-ports": {
        "config": {
            "authz": {"grpc_port": 7001, "metrics_port": 7101},
            "gateway": {"port": 10080, "admin_port": 19000},
            "epp": {"saturation": {"mode": "shed", "queue_timeout_ms": 250}},
        },
        "fullnameOverride": "llm-gateway",
    },
}


@dataclass(frozen=True)
class BadCase:
    values: Values
    # A fragment of Helm's message that tells the user what to fix.
    expect: str


BAD: dict[str, BadCase] = {
    "unknown envoy mode": BadCase({"envoy": {"mode": "istio"}}, "/envoy/mode"),
    "replicas not a number": BadCase({"authz": {"replicas": "two"}}, "/authz/replicas"),
    "misspelt top-level key": BadCase({"replica": 2}, "additional properties 'replica' not allowed"),
    "bad saturation mode": BadCase({"config": {"epp": {"saturation": {"mode": "drop"}}}}, "/config/epp"),
    "directory tenants": BadCase({"config": {"tenants": {"source": "directory"}}}, "config.tenants.source"),
    "replicas without a shared store": BadCase({"extproc": {"replicas": 2}}, "extproc.replicas: 2 replicas"),
    "two quota stores": BadCase(
        {"redis": {"enabled": True}, "config": {"quota_store": "redis://x:6379/0"}}, "set one of them"
    ),
    "model on a missing pool": BadCase(
        {"config": {"models": {"acme/model": {"pool": "acme"}}}}, 'config.models.acme/model.pool: "acme"'
    ),
    "shared gateway without a name": BadCase(
        {"envoy": {"mode": "gateway", "gateway": {"createGateway": False}}}, "envoy.gateway.parentRef.name"
    ),
    "gateway with a static pool": BadCase(
        {
            "envoy": {"mode": "gateway"},
            "config": {"pools": {"llama": {"endpoints": ["10.0.0.7:8000"], "selector": None, "target_port": None}}},
        },
        "config.pools.llama: envoy.mode gateway",
    ),
    "worker on a missing pool": BadCase(
        {"workers": {"enabled": True, "deployments": [{"pool": "acme", "replicas": 1, "engine": "sim"}]}},
        'workers.deployments[0].pool: "acme"',
    ),
    "vllm worker without a model": BadCase(
        {"workers": {"enabled": True, "deployments": [{"pool": "llama", "replicas": 1, "engine": "vllm"}]}},
        "workers.deployments[0].model",
    ),
}
