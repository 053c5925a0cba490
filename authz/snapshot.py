"""Immutable tenant snapshots: what a tenant source publishes and what the check path reads."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from authz.secrets import Rejection, Tenant


@dataclass(frozen=True)
class TenantSnapshot:
    """``by_digest``: live keys. ``refused``: keys whose Secret was rejected (answered 403 with the reason).
    ``rejections``: every rejected Secret, for logs and metrics."""

    by_digest: Mapping[bytes, Tenant] = field(default_factory=lambda: MappingProxyType({}))
    refused: Mapping[bytes, Rejection] = field(default_factory=lambda: MappingProxyType({}))
    rejections: tuple[Rejection, ...] = ()

    def __len__(self) -> int:
        return len(self.by_digest)


def build_snapshot(entries: Iterable[Tenant | Rejection]) -> TenantSnapshot:
    """Index tenants by key digest. A key shared by two Secrets is ambiguous: both are refused."""
    by_digest: dict[bytes, Tenant] = {}
    rejections: list[Rejection] = []
    duplicated: dict[bytes, list[str]] = {}
    for entry in entries:
        if isinstance(entry, Rejection):
            rejections.append(entry)
        elif entry.key_digest in duplicated:
            duplicated[entry.key_digest].append(entry.secret)
        elif entry.key_digest in by_digest:
            duplicated[entry.key_digest] = [by_digest.pop(entry.key_digest).secret, entry.secret]
        else:
            by_digest[entry.key_digest] = entry
    refused: dict[bytes, Rejection] = {}
    for digest, secrets in duplicated.items():
        for secret in secrets:
            rejection = Rejection(secret, "api_key duplicates another Secret's key", digest, "duplicate_key")
            rejections.append(rejection)
            refused[digest] = rejection
    for rejection in rejections:
        # A broken Secret must not take a working key hostage: a live tenant with the same key wins.
        if rejection.key_digest is not None and rejection.key_digest not in by_digest:
            refused.setdefault(rejection.key_digest, rejection)
    return TenantSnapshot(
        by_digest=MappingProxyType(by_digest), refused=MappingProxyType(refused), rejections=tuple(rejections)
    )
