"""The chart's custom resources, checked without their CRDs: kubernetes-validate knows only built-in kinds.

Each kind gets a small JSON Schema of the fields the chart sets, written from the projects' API types
(Prometheus Operator monitoring.coreos.com/v1, Gateway API v1, Envoy Gateway gateway.envoyproxy.io/v1alpha1):
required fields, enums and patterns that the CRDs enforce, and no unknown keys where the chart writes the object
whole. Then every reference between objects (backendRefs, targetRefs, parentRefs, extensionRef) must name an
object the chart renders, with the port it names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema

Obj = Mapping[str, Any]

# Gateway API's Duration: 1 to 4 parts like 1h, 30s, 500ms, each at most 5 digits.
DURATION = {"type": "string", "pattern": "^([0-9]{1,5}(h|m|s|ms)){1,4}$"}
NAME = {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
SERVICE_REF = {
    "type": "object",
    "required": ["name", "port"],
    "properties": {"name": NAME, "port": PORT, "group": {"const": ""}, "kind": {"const": "Service"}},
    "additionalProperties": False,
}
ONE_SERVICE = {"type": "array", "minItems": 1, "maxItems": 1, "items": SERVICE_REF}
TARGET_REFS = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["group", "kind", "name"],
        "properties": {"group": {"const": "gateway.networking.k8s.io"}, "kind": {"enum": ["Gateway", "HTTPRoute"]}},
    },
}
BODY_MODE = {"enum": ["Streamed", "Buffered", "BufferedPartial", "FullDuplexStreamed"]}
# Envoy Gateway accepts only these attribute prefixes.
ATTRIBUTES = {
    "type": "array",
    "items": {
        "pattern": r"^(connection\.|source\.|destination\.|request\.|response\.|upstream\.|xds\.route_)[a-z_1-9]*$"
    },
}


def _spec(properties: Mapping[str, Any], required: Iterable[str]) -> dict[str, Any]:
    spec = {"type": "object", "required": list(required), "properties": dict(properties), "additionalProperties": False}
    return {"type": "object", "required": ["metadata", "spec"], "properties": {"spec": spec}}


_MONITOR_ENDPOINT = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "object", "required": ["port"], "properties": {"interval": DURATION, "path": {"pattern": "^/"}}},
}
_EXT_PROC = {
    "type": "object",
    "required": ["backendRefs"],
    "additionalProperties": False,
    "properties": {
        "backendRefs": ONE_SERVICE,
        "failOpen": {"type": "boolean"},
        "messageTimeout": DURATION,
        "processingMode": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "allowModeOverride": {"type": "boolean"},
                "request": {"type": "object", "properties": {"body": BODY_MODE, "attributes": ATTRIBUTES}},
                "response": {"type": "object", "properties": {"body": BODY_MODE, "attributes": ATTRIBUTES}},
            },
        },
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "accessibleNamespaces": {"type": "array", "items": {"type": "string"}},
                # Envoy Gateway refuses the well-known filter namespaces here.
                "writableNamespaces": {
                    "type": "array",
                    "maxItems": 8,
                    "items": {"not": {"pattern": "^envoy.filters.http"}},
                },
            },
        },
    },
}

SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _spec(
        {"selector": {"type": "object"}, "endpoints": _MONITOR_ENDPOINT}, ["selector", "endpoints"]
    ),
    ("monitoring.coreos.com/v1", "PodMonitor"): _spec(
        {"selector": {"type": "object"}, "podMetricsEndpoints": _MONITOR_ENDPOINT}, ["selector", "podMetricsEndpoints"]
    ),
    ("gateway.networking.k8s.io/v1", "Gateway"): _spec(
        {
            "gatewayClassName": NAME,
            "listeners": {
                "type": "array",
                "minItems": 1,
                "maxItems": 64,
                "items": {
                    "type": "object",
                    "required": ["name", "protocol", "port"],
                    "properties": {"name": NAME, "protocol": {"enum": ["HTTP", "HTTPS"]}, "port": PORT},
                },
            },
        },
        ["gatewayClassName", "listeners"],
    ),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): _spec(
        {
            "parentRefs": {"type": "array", "minItems": 1, "maxItems": 32, "items": {"required": ["name"]}},
            "hostnames": {"type": "array", "maxItems": 16},
            "rules": {
                "type": "array",
                "minItems": 1,
                "maxItems": 16,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matches": {
                            "type": "array",
                            "maxItems": 64,
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "path": {
                                        "required": ["type", "value"],
                                        "properties": {"type": {"const": "PathPrefix"}},
                                    },
                                    "headers": {"type": "array", "items": {"required": ["name", "value"]}},
                                },
                            },
                        },
                        "backendRefs": {"type": "array", "items": SERVICE_REF},
                        "filters": {"type": "array", "items": {"required": ["type"]}},
                        "timeouts": {
                            "type": "object",
                            "properties": {"request": DURATION},
                            "additionalProperties": False,
                        },
                    },
                },
            },
        },
        ["parentRefs", "rules"],
    ),
    ("gateway.envoyproxy.io/v1alpha1", "HTTPRouteFilter"): _spec(
        {
            "directResponse": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "statusCode": {"type": "integer", "minimum": 100, "maximum": 599},
                    "contentType": {"type": "string"},
                    "body": {
                        "required": ["type", "inline"],
                        "properties": {"type": {"const": "Inline"}, "inline": {"type": "string", "maxLength": 4096}},
                    },
                },
            }
        },
        ["directResponse"],
    ),
    ("gateway.envoyproxy.io/v1alpha1", "SecurityPolicy"): _spec(
        {
            "targetRefs": TARGET_REFS,
            "extAuth": {
                "type": "object",
                "required": ["grpc"],
                "additionalProperties": False,
                "properties": {
                    "grpc": {"required": ["backendRefs"], "properties": {"backendRefs": ONE_SERVICE}},
                    "timeout": DURATION,
                    "failOpen": {"type": "boolean"},
                },
            },
        },
        ["targetRefs", "extAuth"],
    ),
    ("gateway.envoyproxy.io/v1alpha1", "EnvoyExtensionPolicy"): _spec(
        {"targetRefs": TARGET_REFS, "extProc": {"type": "array", "minItems": 1, "maxItems": 16, "items": _EXT_PROC}},
        ["targetRefs", "extProc"],
    ),
    ("gateway.envoyproxy.io/v1alpha1", "BackendTrafficPolicy"): _spec(
        {
            "targetRefs": TARGET_REFS,
            "loadBalancer": {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"enum": ["ConsistentHash", "LeastRequest", "Random", "RoundRobin"]},
                    "endpointOverride": {
                        "required": ["extractFrom"],
                        "properties": {"extractFrom": {"type": "array", "minItems": 1, "maxItems": 10}},
                    },
                },
            },
        },
        ["targetRefs", "loadBalancer"],
    ),
    ("gateway.envoyproxy.io/v1alpha1", "ClientTrafficPolicy"): _spec(
        {
            "targetRefs": TARGET_REFS,
            "headers": {"properties": {"earlyRequestHeaders": {"properties": {"remove": {"type": "array"}}}}},
            "connection": {
                "properties": {"bufferLimit": {"type": "string", "pattern": "^[1-9]+[0-9]*([EPTGMK]i|[EPTGMk])?$"}}
            },
        },
        ["targetRefs"],
    ),
}


def is_custom(obj: Obj) -> bool:
    return (obj.get("apiVersion"), obj.get("kind")) in SCHEMAS


def schema_problems(obj: Obj) -> list[str]:
    """What the kind's schema finds wrong with one custom resource; [] when it passes."""
    schema = SCHEMAS[(obj["apiVersion"], obj["kind"])]
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{describe(obj)}: {'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(obj)
    ]


def describe(obj: Obj) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def reference_problems(objects: Iterable[Obj]) -> list[str]:
    """References between rendered objects that point at nothing the chart renders."""
    objects = list(objects)
    service_ports = {
        obj["metadata"]["name"]: {port["port"] for port in obj["spec"].get("ports", [])}
        for obj in objects
        if obj["kind"] == "Service"
    }
    names = {(obj["kind"], obj["metadata"]["name"]) for obj in objects}
    problems: list[str] = []
    for obj in objects:
        spec = obj.get("spec", {})
        for ref in _service_refs(obj):
            if ref["port"] not in service_ports.get(ref["name"], set()):
                problems.append(f"{describe(obj)}: no Service {ref['name']} with port {ref['port']}")
        for ref in spec.get("targetRefs", []) if is_custom(obj) else []:
            if (ref["kind"], ref["name"]) not in names:
                problems.append(f"{describe(obj)}: targets {ref['kind']}/{ref['name']}, which is not rendered")
        if obj["kind"] == "HTTPRoute":
            for rule in spec["rules"]:
                for chain in rule.get("filters", []):
                    extension = chain.get("extensionRef", {})
                    if extension and (extension["kind"], extension["name"]) not in names:
                        problems.append(
                            f"{describe(obj)}: filter {extension['kind']}/{extension['name']} is not rendered"
                        )
    return problems


def _service_refs(obj: Obj) -> list[Obj]:
    spec = obj.get("spec", {})
    if obj["kind"] == "HTTPRoute":
        return [ref for rule in spec["rules"] for ref in rule.get("backendRefs", [])]
    if obj["kind"] == "SecurityPolicy":
        return list(spec["extAuth"]["grpc"]["backendRefs"])
    if obj["kind"] == "EnvoyExtensionPolicy":
        return [ref for processor in spec["extProc"] for ref in processor["backendRefs"]]
    return []
