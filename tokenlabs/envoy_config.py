"""Render the Envoy bootstrap from ``Settings``, and find the Envoy binary.

The template lives in the repository's ``envoy/`` folder (not a Python package: that name belongs to the Envoy
API packages); ``TOKENLABS_ENVOY_TEMPLATE`` or ``--template`` point elsewhere. The binary is ``$TOKENLABS_ENVOY``,
else ``envoy`` next to the running interpreter (``make`` puts it in ``.venv/bin``), else ``envoy`` on ``PATH``.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
from pathlib import Path

import jinja2

from tokenlabs import headers
from tokenlabs.settings import ENVOY_BINARY_ENV, ENVOY_TEMPLATE_ENV, Settings

# Headroom over the largest accepted body for Envoy's own framing of buffered bodies.
BUFFER_HEADROOM_BYTES = 1024 * 1024


def default_template() -> Path:
    configured = os.environ.get(ENVOY_TEMPLATE_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent / "envoy" / "bootstrap.yaml.j2"


def render_bootstrap(settings: Settings, template: Path | None = None) -> str:
    path = template or default_template()
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(path.parent),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # YAML, not HTML
    )
    return environment.get_template(path.name).render(
        gateway=settings.gateway,
        timeout_seconds=int(settings.gateway.request_timeout_seconds),
        buffer_limit_bytes=settings.limits.max_request_body_bytes + BUFFER_HEADROOM_BYTES,
        max_body_bytes=settings.limits.max_request_body_bytes,
        gateway_owned_headers=headers.GATEWAY_OWNED,
        models=list(settings.models.values()),
        pools=list(settings.pools.values()),
        epp_message_timeout_s=f"{settings.epp.saturation.queue_timeout_s + 1.0:.3f}",
        plugin_servers=[
            (name, server, upstream_cluster_type(server.host))
            for name, server in (("authz", settings.authz), ("extproc", settings.extproc), ("epp", settings.epp))
        ],
    )


def upstream_cluster_type(host: str) -> str:
    """Envoy's cluster type for a plugin server: an IP is used as is, a name is resolved (and re-resolved) by DNS."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "STRICT_DNS"
    return "STATIC"


def find_envoy() -> str:
    configured = os.environ.get(ENVOY_BINARY_ENV)
    if configured:
        return configured
    beside_python = Path(sys.executable).parent / "envoy"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    found = shutil.which("envoy")
    if found is None:
        raise FileNotFoundError("no Envoy binary: run `make envoy` or set TOKENLABS_ENVOY to its path")
    return found
