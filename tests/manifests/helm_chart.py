"""Lint and render the chart with Helm's own library (PyPI helm-sdkpy), offline.

Rendering is Helm's install action against ``fake_kube_api`` (helm-sdkpy has no ``helm template``): the values
schema, ``required`` and ``fail`` run exactly as in a real ``helm install``, and the release's manifest is the
rendered chart.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_sdkpy
import yaml

from tests.manifests.fake_kube_api import fake_kube_api

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "manifests" / "tokenlabs"
RELEASE = "tokenlabs"
NAMESPACE = "inference"
# Helm's lint severities (pkg/lint/support): 1 info, 2 warning, 3 error.
LINT_ERROR = 3


class RenderError(Exception):
    """Helm refused the values or a template failed; the message is Helm's."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a mapping with a key twice (Helm's parser keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        duplicates = sorted({str(key) for key in keys if keys.count(key) > 1})
        if duplicates:
            raise RenderError(f"duplicate keys {duplicates} in a mapping at {node.start_mark}")
        return super().construct_mapping(node, deep=deep)


@dataclass(frozen=True)
class LintFinding:
    severity: int
    path: str


class Chart:
    """One Helm configuration bound to the fake API; use ``open_chart()``."""

    def __init__(self, configuration: Any, path: Path) -> None:
        self._configuration = configuration
        self.path = path

    def render(self, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The objects ``helm install`` would create with these values (merged over values.yaml)."""
        install = helm_sdkpy.Install(self._configuration)
        try:
            # Values travel as JSON; an empty mapping must still be a mapping, not "no values".
            release = asyncio.run(install.run(RELEASE, str(self.path), values=dict(values) or None, wait=False))
        except helm_sdkpy.HelmError as error:
            raise RenderError(str(error)) from None
        return [document for document in yaml.load_all(release["manifest"], Loader=_UniqueKeyLoader) if document]

    def lint(self) -> list[LintFinding]:
        """Helm's lint with the chart's default values. helm-sdkpy hands back severities and paths only."""
        result = asyncio.run(helm_sdkpy.Lint(self._configuration).run(str(self.path)))
        return [LintFinding(message["Severity"], message["Path"]) for message in result.get("Messages") or []]


@contextmanager
def open_chart(path: Path = CHART) -> Iterator[Chart]:
    with tempfile.TemporaryDirectory(prefix="chart-check-") as directory, fake_kube_api(Path(directory)) as kubeconfig:
        configuration = helm_sdkpy.Configuration(namespace=NAMESPACE, kubeconfig=str(kubeconfig))
        yield Chart(configuration, path)
