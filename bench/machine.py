"""The machine and tool versions a benchmark ran under, recorded with every result."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import wrk
from tokenlabs.envoy_config import find_envoy


def machine_facts(uses_wrk: bool = True) -> dict[str, Any]:
    """Date, cores, CPU model, kernel, load average at start and the versions of Envoy, wrk (for a benchmark that
    ``uses_wrk``) and Python."""
    facts = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "loadavg_at_start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "envoy_version": envoy_version(),
    }
    if uses_wrk:
        facts["wrk_version"] = wrk.version()
    facts["python"] = platform.python_version()
    return facts


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def envoy_version() -> str:
    # "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
    text = subprocess.run([find_envoy(), "--version"], capture_output=True, text=True, check=True).stdout
    parts = text.split("version:", 1)[-1].strip().split("/")
    return parts[1] if len(parts) > 1 else text.strip()


def machine_line(facts: Mapping[str, Any], envoy_concurrency: int) -> str:
    """The summary's machine line as far as every benchmark shares it (from ``machine_facts``)."""
    return (
        f"machine: {facts['nproc']} x {facts['cpu_model']}, load avg at start {facts['loadavg_at_start']}; "
        f"Envoy {facts['envoy_version']} --concurrency {envoy_concurrency}"
    )
