"""Tenant administration: what ``tokenlabs tenants`` does to tenant Secrets, behind one ``TenantStore`` protocol.

Stores: ``authz.admin.directory.DirectoryStore`` (one YAML file per Secret, the local source) and
``authz.admin.kubernetes.KubernetesStore`` (Secrets through the Kubernetes API). Both hold the Authorino Secret
format that ``authz.secrets.parse_secret`` reads, and report a Secret as live or refused exactly as authz would.
Errors are ``AdminError`` subclasses whose messages are safe to print: they never hold a key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from authz.admin.manifest import tenant_name
from authz.secrets import TENANT_ANNOTATION, TIER_ANNOTATION, Rejection, Tenant, parse_secret
from authz.snapshot import build_snapshot
from tokenlabs.errors import TokenlabsError


class AdminError(TokenlabsError):
    """An operation on a tenant Secret failed; the message says which Secret and where."""


class NotFound(AdminError):
    pass


class AlreadyExists(AdminError):
    pass


class StoreError(AdminError):
    """The store itself failed: an API error, an unreachable server, an unreadable or unwritable file."""


@dataclass(frozen=True)
class TenantRecord:
    """One Secret as ``tenants list`` shows it; there is deliberately no field for the key.

    ``name`` is the tenant NAME the CLI takes (``None`` when the Secret is not named ``tenant-NAME``); ``tenant_id``
    and ``tier`` are the annotations as written (``None`` when missing); ``reason`` is empty when ``live``.
    """

    secret: str
    name: str | None
    tenant_id: str | None
    tier: str | None
    live: bool
    reason: str
    created: datetime | None


class TenantStore(Protocol):
    """Where tenant Secrets live. ``secret`` arguments are Secret names (``tenant-NAME``).

    ``get`` returns the stored Secret as a JSON-shaped document (key included); ``create`` takes a manifest with the
    key in ``stringData``; ``set_key`` makes the old key dead at once; ``set_tier`` changes only the tier annotation.
    ``NotFound`` / ``AlreadyExists`` / ``StoreError`` on failure.
    """

    @property
    def namespace(self) -> str: ...

    @property
    def location(self) -> str:
        """Where the Secrets are, for messages: ``namespace NS`` or ``directory PATH``."""
        ...

    def get(self, secret: str) -> dict[str, Any]: ...

    def list_tenants(self, known_tiers: frozenset[str]) -> list[TenantRecord]: ...

    def create(self, document: Mapping[str, Any]) -> None: ...

    def set_key(self, secret: str, key: str) -> None: ...

    def set_tier(self, secret: str, tier: str) -> None: ...

    def delete(self, secret: str) -> None: ...


def records(
    documents: Iterable[tuple[Mapping[str, Any], datetime | None]], known_tiers: frozenset[str]
) -> list[TenantRecord]:
    """Records for (Secret, creation time) pairs, live or refused by the same rules as authz's snapshot, a key
    shared by two Secrets included. Non-Secret documents are skipped."""
    parsed: list[tuple[Mapping[str, Any], datetime | None, Tenant | Rejection]] = []
    for document, created in documents:
        entry = parse_secret(document, known_tiers)
        if entry is not None:
            parsed.append((document, created, entry))
    snapshot = build_snapshot(entry for _, _, entry in parsed)
    result = []
    for document, created, entry in parsed:
        reason = ""
        if isinstance(entry, Rejection):
            reason = entry.reason
        elif entry.key_digest not in snapshot.by_digest:
            reason = snapshot.refused[entry.key_digest].reason
        result.append(_record(document, created, reason))
    return result


def unreadable(secret: str, reason: str) -> TenantRecord:
    """A record for something that could not even be parsed (a broken file), shown refused with the reason."""
    return TenantRecord(secret=secret, name=None, tenant_id=None, tier=None, live=False, reason=reason, created=None)


def timestamp(value: Any) -> datetime | None:
    """A ``creationTimestamp`` as an aware datetime (UTC when unzoned); ``None`` when absent or unparseable."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _record(document: Mapping[str, Any], created: datetime | None, reason: str) -> TenantRecord:
    meta = document.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    annotations = meta.get("annotations")
    annotations = annotations if isinstance(annotations, Mapping) else {}
    secret = str(meta.get("name") or "<unnamed>")
    return TenantRecord(
        secret=secret,
        name=tenant_name(secret),
        tenant_id=_text(annotations.get(TENANT_ANNOTATION)),
        tier=_text(annotations.get(TIER_ANNOTATION)),
        live=not reason,
        reason=reason,
        created=created,
    )


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None
