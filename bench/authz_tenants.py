"""The authz benchmark's tenants: Authorino-format Secrets with deterministic keys, written as one YAML file.

Tenant ``i`` has the key ``bench_key(i)``, so the load generators know every key without reading the Secrets, and
the tier is the shipped tiers in turn. All keys have the same length, so a Check request for any tenant is one
pre-serialised template with the key spliced in.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Sequence
from pathlib import Path

from authz.sources.directory import read_directory

FILE_NAME = "bench-tenants.yaml"
# Same shape as manifests/examples/tenants/*.yaml.
_SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: bench-tenant-{index:08d}
  namespace: kuadrant-system
  labels:
    authorino.kuadrant.io/managed-by: authorino
    app: token-labs
  annotations:
    kuadrant.io/groups: "{tier}"
    secret.kuadrant.io/user-id: "bench-{index:08d}"
stringData:
  api_key: "{key}"
"""


def bench_key(index: int) -> str:
    """The API key of tenant ``index``; 30 characters for every index below 10**8."""
    return f"tlabs_bench_{index:08d}_change_me"


def write_tenants(directory: Path, count: int, tiers: Sequence[str]) -> Path:
    """``count`` Secrets as one multi-document file in ``directory``; returns the file."""
    secrets = (
        _SECRET.format(index=index, tier=tiers[index % len(tiers)], key=bench_key(index)) for index in range(count)
    )
    path = directory / FILE_NAME
    path.write_text("---\n".join(secrets), encoding="utf-8")
    return path


def retained_bytes_per_tenant(directory: Path, count: int, tiers: Sequence[str]) -> float:
    """What the loaded snapshot itself keeps per tenant, without what parsing left in the allocator: tracemalloc's
    live bytes after ``read_directory`` of ``count`` bench Secrets (a first, untraced read warms every cache)."""
    write_tenants(directory, count, tiers)
    read_directory(directory, frozenset(tiers))
    tracemalloc.start()
    try:
        snapshot = read_directory(directory, frozenset(tiers))
        retained, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return retained / max(1, len(snapshot))
