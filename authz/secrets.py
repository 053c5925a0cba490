"""Kubernetes Secret (Authorino format) → ``Tenant``; pure, no I/O.

A Secret becomes a tenant when it carries ``kuadrant.io/groups`` (the tier) and ``secret.kuadrant.io/user-id``
(the tenant id) annotations and an ``api_key`` in ``stringData`` or base64 ``data``. Only the SHA-256 digest of
the key is kept; the plaintext is dropped as soon as it is hashed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TIER_ANNOTATION = "kuadrant.io/groups"
TENANT_ANNOTATION = "secret.kuadrant.io/user-id"
MANAGED_BY_LABEL = "authorino.kuadrant.io/managed-by"
KEY_FIELD = "api_key"


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    tier: str
    secret: str  # namespace/name, for logs and metrics; never the key
    key_digest: bytes


@dataclass(frozen=True)
class Rejection:
    """A Secret that could not become a tenant, with the reason stated for operators. When its key could be read,
    ``key_digest`` lets that key be answered with 403 and the reason instead of a bare 401."""

    secret: str
    reason: str
    key_digest: bytes | None = None
    code: str = "invalid"  # a short, bounded label for metrics: missing_annotation, unknown_tier, no_key, ...


def secret_name(document: Mapping[str, Any]) -> str:
    meta = document.get("metadata")
    if not isinstance(meta, Mapping):
        return "<unnamed>"
    return f"{meta.get('namespace') or 'default'}/{meta.get('name') or '<unnamed>'}"


def parse_secret(document: Any, known_tiers: frozenset[str] | set[str]) -> Tenant | Rejection | None:
    """``None`` when the document is not a Secret at all (other kinds in the same folder are ignored)."""
    if not isinstance(document, Mapping) or document.get("kind") != "Secret":
        return None
    name = secret_name(document)
    key = api_key(document)
    if isinstance(key, Rejection):
        return Rejection(name, key.reason, code=key.code)
    digest = key_digest(key)
    meta = document.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    if not isinstance(annotations, Mapping):
        return Rejection(name, "no annotations", digest, "missing_annotation")
    tier = annotations.get(TIER_ANNOTATION)
    tenant_id = annotations.get(TENANT_ANNOTATION)
    if not isinstance(tier, str) or not tier.strip():
        return Rejection(name, f"missing annotation {TIER_ANNOTATION}", digest, "missing_annotation")
    if not isinstance(tenant_id, str) or not tenant_id.strip():
        return Rejection(name, f"missing annotation {TENANT_ANNOTATION}", digest, "missing_annotation")
    tier = tier.strip()
    if tier not in known_tiers:
        return Rejection(name, f"unknown tier {tier!r}", digest, "unknown_tier")
    return Tenant(tenant_id=tenant_id.strip(), tier=tier, secret=name, key_digest=digest)


def api_key(document: Mapping[str, Any]) -> str | Rejection:
    """The plaintext key from ``stringData.api_key`` or base64 ``data.api_key``; a Rejection (without the
    Secret's name) when neither holds a usable key."""
    string_data = document.get("stringData")
    if isinstance(string_data, Mapping) and KEY_FIELD in string_data:
        key = string_data[KEY_FIELD]
        if not isinstance(key, str) or not key.strip():
            return Rejection("", "empty api_key", code="empty_key")
        return key.strip()
    data = document.get("data")
    if isinstance(data, Mapping) and KEY_FIELD in data:
        encoded = data[KEY_FIELD]
        try:
            key = base64.b64decode(encoded if isinstance(encoded, str) else "", validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return Rejection("", "data.api_key is not valid base64 UTF-8", code="bad_key")
        if not key.strip():
            return Rejection("", "empty api_key", code="empty_key")
        return key.strip()
    return Rejection("", "no api_key in stringData or data", code="no_key")
