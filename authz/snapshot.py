"""Immutable tenant snapshots: what a tenant source publishes and what the check path reads."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from authz.secrets import Rejection, Tenant


@dataclass(frozen=True)
class TenantSnapshot:
    by_digest: Mapping[bytes, Tenant] = field(default_factory=lambda: MappingProxyType({}))
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
    for secrets in duplicated.values():
        rejections.extend(Rejection(secret, "api_key duplicates another Secret's key") for secret in secrets)
    return TenantSnapshot(by_digest=MappingProxyType(by_digest), rejections=tuple(rejections))
