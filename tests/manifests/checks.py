"""Checks on one rendered set of objects: Kubernetes schemas, the config the servers will read, the Envoy
bootstrap the standalone Envoy will render, and the places where two objects must agree (ports, hosts, labels,
RBAC namespaces, header lists, dashboard metric names)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from tests.manifests.custom_resources import describe, is_custom, reference_problems, schema_problems
from tests.manifests.helm_chart import NAMESPACE
from tokenlabs import headers
from tokenlabs.cli import build_parser
from tokenlabs.envoy_config import find_envoy, render_bootstrap
from tokenlabs.errors import ConfigError
from tokenlabs.settings import Settings, load

Obj = Mapping[str, Any]
KUBERNETES_VERSION = "1.32.0"
REPO = Path(__file__).resolve().parents[2]
SOURCES = ("authz", "extproc", "epp", "tokenlabs")
# Prometheus adds these to the names the code registers.
METRIC_SUFFIXES = re.compile(r"_(total|bucket|count|sum)$")


@dataclass
class Report:
    """What the checks of one value set found; problems empty means it passed."""

    kubernetes_validated: int = 0
    custom_checked: int = 0
    envoy_configs_validated: int = 0
    problems: list[str] = field(default_factory=list)


def check_objects(objects: list[dict[str, Any]]) -> Report:
    report = Report()
    for obj in objects:
        if is_custom(obj):
            report.custom_checked += 1
            report.problems += schema_problems(obj)
        else:
            report.kubernetes_validated += 1
            report.problems += kubernetes_problems(obj)
    report.problems += reference_problems(objects)
    settings = _server_settings(objects, report)
    if settings is not None:
        report.problems += _agreement_problems(objects, settings)
        if _find(objects, "Deployment", "envoy") is not None:
            report.problems += _envoy_problems(objects, report)
    report.problems += _dashboard_problems(objects)
    report.problems += _command_problems(objects)
    return report


def kubernetes_problems(obj: Obj) -> list[str]:
    try:
        kubernetes_validate.validate(dict(obj), KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(p) for p in error.path) or "<root>"
        return [f"{describe(obj)}: {where}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{describe(obj)}: no Kubernetes {KUBERNETES_VERSION} schema for {obj.get('apiVersion')}"]
    return []


def _find(objects: Iterable[Obj], kind: str, component: str) -> Obj | None:
    """The object of a kind whose name ends with -component (the chart names objects <fullname>-<component>)."""
    return next((o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(f"-{component}")), None)


def _config_text(objects: Iterable[Obj]) -> str | None:
    config_map = _find(objects, "ConfigMap", "config")
    return None if config_map is None else str(config_map["data"]["tokenlabs.yaml"])


def _load_settings(text: str, environ: Mapping[str, str]) -> Settings:
    """Read a config the way a server in the pod does: from a file, with the pod's environment."""
    with tempfile.TemporaryDirectory(prefix="chart-config-") as directory:
        path = Path(directory) / "tokenlabs.yaml"
        path.write_text(text, encoding="utf-8")
        return load(path, environ=environ)


def _server_settings(objects: list[dict[str, Any]], report: Report) -> Settings | None:
    text = _config_text(objects)
    if text is None:
        report.problems.append("no ConfigMap <fullname>-config with tokenlabs.yaml")
        return None
    try:
        return _load_settings(text, environ={})
    except ConfigError as error:
        report.problems.append(f"the servers would refuse the ConfigMap's config: {error}")
        return None


def _containers(deployment: Obj, init: bool = False) -> list[Obj]:
    return list(deployment["spec"]["template"]["spec"].get("initContainers" if init else "containers", []))


def _ports(container: Obj) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container.get("ports", [])}


def _agreement_problems(objects: list[dict[str, Any]], settings: Settings) -> list[str]:
    problems: list[str] = []
    for name, server in (("authz", settings.authz), ("extproc", settings.extproc), ("epp", settings.epp)):
        deployment, service = _find(objects, "Deployment", name), _find(objects, "Service", name)
        if deployment is None or service is None:
            problems.append(f"{name}: no Deployment and Service")
            continue
        container = _containers(deployment)[0]
        expected = {"grpc": server.grpc_port, "metrics": server.metrics_port}
        if _ports(container) != expected:
            problems.append(f"{name}: container ports {_ports(container)} but the config says {expected}")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if container.get(probe, {}).get("grpc", {}).get("port") != server.grpc_port:
                problems.append(f"{name}: {probe} is not a grpc probe on {server.grpc_port}")
        if service["spec"].get("clusterIP") != "None":
            problems.append(f"{name}: Service is not headless (Envoy's STRICT_DNS would see one address)")
    problems += _rbac_problems(objects, settings)
    problems += _worker_problems(objects, settings)
    policy = next((o for o in objects if o["kind"] == "ClientTrafficPolicy"), None)
    if policy is not None and policy["spec"]["headers"]["earlyRequestHeaders"]["remove"] != list(headers.GATEWAY_OWNED):
        problems.append(f"{describe(policy)}: removes other headers than tokenlabs.headers.GATEWAY_OWNED")
    return problems


def _rbac_problems(objects: list[dict[str, Any]], settings: Settings) -> list[str]:
    grants = {
        (o["metadata"]["namespace"], resource, tuple(rule["verbs"]))
        for o in objects
        if o["kind"] == "Role"
        for rule in o["rules"]
        for resource in rule["resources"]
    }
    needed = {(settings.tenants.namespace, "secrets")}
    needed |= {(pool.pods.namespace, "pods") for pool in settings.pools.values() if pool.pods is not None}
    problems = [
        f"no Role granting get/list/watch on {resource} in namespace {namespace}"
        for namespace, resource in sorted(needed)
        if (namespace, resource, ("get", "list", "watch")) not in grants
    ]
    extra = {(namespace, resource) for namespace, resource, _ in grants} - needed
    problems += [f"a Role grants {resource} in {namespace}, which no server reads" for namespace, resource in extra]
    return problems


def _worker_problems(objects: list[dict[str, Any]], settings: Settings) -> list[str]:
    problems: list[str] = []
    for deployment in (o for o in objects if o["kind"] == "Deployment" and "-worker-" in o["metadata"]["name"]):
        pool = settings.pools[deployment["metadata"]["name"].split("-worker-", 1)[1]]
        assert pool.pods is not None
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if any(labels.get(key) != value for key, value in pool.pods.match_labels.items()):
            problems.append(
                f"{describe(deployment)}: pods lack pool {pool.name}'s selector {dict(pool.pods.match_labels)}"
            )
        if _ports(_containers(deployment)[0]).get("http") != pool.pods.target_port:
            problems.append(f"{describe(deployment)}: does not serve on the pool's target_port {pool.pods.target_port}")
    return problems


def _envoy_problems(objects: list[dict[str, Any]], report: Report) -> list[str]:
    """Render the bootstrap as the Envoy pod's init container does, then ask the real Envoy to validate it."""
    deployment = _find(objects, "Deployment", "envoy")
    assert deployment is not None
    init = _containers(deployment, init=True)[0]
    environ = {variable["name"]: variable["value"] for variable in init.get("env", [])}
    text = _config_text(objects)
    assert text is not None
    try:
        settings = _load_settings(text, environ)
    except ConfigError as error:
        return [f"envoy: the init container's `tokenlabs envoy render` would refuse the config: {error}"]
    problems: list[str] = []
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    for name, server in (("authz", settings.authz), ("extproc", settings.extproc), ("epp", settings.epp)):
        service_name, _, domain = server.host.partition(".")
        service = services.get(service_name)
        if service is None or not domain.startswith(f"{NAMESPACE}.svc."):
            problems.append(f"envoy: {name} host {server.host} names no rendered Service")
        elif server.grpc_port not in {port["port"] for port in service["spec"]["ports"]}:
            problems.append(f"envoy: Service {service_name} has no port {server.grpc_port}")
    envoy = _containers(deployment)[0]
    if _ports(envoy) != {"http": settings.gateway.port, "admin": settings.gateway.admin_port}:
        problems.append(f"envoy: container ports {_ports(envoy)} differ from the config's gateway ports")
    with tempfile.TemporaryDirectory(prefix="chart-envoy-") as directory:
        path = Path(directory) / "envoy.yaml"
        path.write_text(render_bootstrap(settings), encoding="utf-8")
        clusters = yaml.safe_load(path.read_text())["static_resources"]["clusters"]
        if any(c["type"] != "STRICT_DNS" for c in clusters if c["name"].startswith("tokenlabs_")):
            problems.append("envoy: the plugin servers' clusters are not STRICT_DNS")
        result = subprocess.run(
            [find_envoy(), "--mode", "validate", "-c", str(path), "--disable-hot-restart", "--log-level", "error"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    if result.returncode != 0:
        problems.append(f"envoy --mode validate refused the rendered bootstrap: {result.stdout}{result.stderr}")
    else:
        report.envoy_configs_validated += 1
    return problems


def _dashboard_problems(objects: list[dict[str, Any]]) -> list[str]:
    config_map = _find(objects, "ConfigMap", "dashboard")
    if config_map is None:
        return []
    try:
        dashboard = json.loads(config_map["data"]["tokenlabs.json"])
    except json.JSONDecodeError as error:
        return [f"dashboard: not JSON ({error})"]
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {METRIC_SUFFIXES.sub("", name) for expr in expressions for name in re.findall(r"tokenlabs_\w+", expr)}
    registered = _registered_metric_names()
    return [f"dashboard: metric {name} is registered nowhere in the code" for name in sorted(used - registered)]


def _registered_metric_names() -> set[str]:
    """Metric names as the servers register them: string literals, and f-string families like
    f"tokenlabs_epp_endpoint_{name}" expanded with the names in the same file."""
    names: set[str] = set()
    for source in SOURCES:
        for path in (REPO / source).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            names |= set(re.findall(r"\"(tokenlabs_[a-z_]+)\"", text))
            for prefix in re.findall(r"f\"(tokenlabs_[a-z_]+)\{name\}\"", text):
                names |= {prefix + suffix for suffix in re.findall(r"\(\"([a-z_]+)\", ", text)}
    return names


def _command_problems(objects: list[dict[str, Any]]) -> list[str]:
    """Every `tokenlabs ...` command line in a pod must parse with the real CLI's parser."""
    problems: list[str] = []
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        for container in _containers(deployment, init=True) + _containers(deployment):
            command = [*container.get("command", []), *container.get("args", [])]
            if not command or command[0] != "tokenlabs":
                continue
            errors = io.StringIO()
            try:
                with contextlib.redirect_stderr(errors):
                    build_parser().parse_args(command[1:])
            except SystemExit:
                reason = errors.getvalue().strip().splitlines()[-1]
                problems.append(f"{describe(deployment)}: `{' '.join(command)}`: {reason}")
    return problems
