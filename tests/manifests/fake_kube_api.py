"""Just enough of a Kubernetes API for Helm's install action to render a chart offline.

helm-sdkpy exposes Helm's lint and install actions but no ``helm template``; install renders the chart and then
talks to a cluster: it asks the server's version, discovers the API resources (every kind the chart emits must be
known, custom ones included), looks each object up (404: none yet), creates it, and records the release in a
Secret. This server answers those calls on a loopback port and keeps nothing, so an "install" is a render with
Helm's real engine, values schema and ``required``/``fail`` checks. The release record arrives as protobuf and is
answered with a stub; everything else is echoed back.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

KUBERNETES_VERSION = (1, 32)
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class ApiResource:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


# Every kind the chart may emit, and the Secrets Helm stores releases in.
RESOURCES = (
    ApiResource("", "v1", "ConfigMap", "configmaps"),
    ApiResource("", "v1", "Secret", "secrets"),
    ApiResource("", "v1", "Service", "services"),
    ApiResource("", "v1", "ServiceAccount", "serviceaccounts"),
    ApiResource("apps", "v1", "Deployment", "deployments"),
    ApiResource("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    ApiResource("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    ApiResource("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    ApiResource("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors"),
    ApiResource("monitoring.coreos.com", "v1", "PodMonitor", "podmonitors"),
    ApiResource("gateway.networking.k8s.io", "v1", "Gateway", "gateways"),
    ApiResource("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes"),
    ApiResource("gateway.envoyproxy.io", "v1alpha1", "EnvoyExtensionPolicy", "envoyextensionpolicies"),
    ApiResource("gateway.envoyproxy.io", "v1alpha1", "SecurityPolicy", "securitypolicies"),
    ApiResource("gateway.envoyproxy.io", "v1alpha1", "BackendTrafficPolicy", "backendtrafficpolicies"),
    ApiResource("gateway.envoyproxy.io", "v1alpha1", "ClientTrafficPolicy", "clienttrafficpolicies"),
    ApiResource("gateway.envoyproxy.io", "v1alpha1", "HTTPRouteFilter", "httproutefilters"),
)


def _discovery() -> dict[str, Any]:
    """Responses for the discovery paths (client-go falls back to these legacy documents)."""
    major, minor = KUBERNETES_VERSION
    documents: dict[str, Any] = {
        "/version": {"major": str(major), "minor": str(minor), "gitVersion": f"v{major}.{minor}.0"},
        "/api": {"kind": "APIVersions", "versions": ["v1"]},
    }
    groups: dict[str, list[ApiResource]] = {}
    for resource in RESOURCES:
        groups.setdefault(resource.group_version, []).append(resource)
    named = [gv for gv in groups if "/" in gv]
    documents["/apis"] = {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": gv.split("/")[0],
                "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]},
            }
            for gv in named
        ],
    }
    for group_version, resources in groups.items():
        path = f"/apis/{group_version}" if "/" in group_version else f"/api/{group_version}"
        documents[path] = {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": [
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": VERBS,
                }
                for r in resources
            ],
        }
    return documents


DISCOVERY = _discovery()
NOT_FOUND = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: Helm's calls are not news."""

    def _answer(self, status: int, document: Any) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        document = DISCOVERY.get(self.path.split("?")[0])
        if document is None:
            self._answer(404, NOT_FOUND)
        else:
            self._answer(200, document)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Type", "").startswith("application/json"):
            self._answer(201, json.loads(body))
        else:  # Helm's release record (protobuf)
            self._answer(201, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "release"}})

    do_PUT = do_POST
    do_PATCH = do_POST


@contextmanager
def fake_kube_api(directory: Path) -> Iterator[Path]:
    """Serve the fake API on a loopback port while the block runs; yields a kubeconfig file pointing at it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, name="fake-kube-api", daemon=True)
    thread.start()
    kubeconfig = directory / "kubeconfig"
    host, port = server.server_address[:2]
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": f"http://{host!s}:{port}"}}],
                "users": [{"name": "fake", "user": {"token": "unused"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "fake",
            }
        ),
        encoding="utf-8",
    )
    try:
        yield kubeconfig
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
