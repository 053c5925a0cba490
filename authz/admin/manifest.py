"""Tenant Secret documents and API keys: what ``tokenlabs tenants`` writes, in the format ``authz.secrets`` reads.

Pure, no I/O. A tenant NAME maps to the Secret ``tenant-NAME``; manifests carry the key in ``stringData.api_key``
(readable in files, accepted by ``kubectl apply``), ``encoded`` moves it to base64 ``data.api_key`` for the API.
"""

from __future__ import annotations

import base64
import copy
import re
import secrets
from collections.abc import Mapping
from typing import Any

from authz.secrets import KEY_FIELD, MANAGED_BY_LABEL, TENANT_ANNOTATION, TIER_ANNOTATION

KEY_PREFIX = "tlabs_sk_"
SECRET_PREFIX = "tenant-"
LABELS: Mapping[str, str] = {MANAGED_BY_LABEL: "authorino", "app": "token-labs"}
# Written by `kubectl apply` and holding the whole applied object, key included: never copied into output.
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"

# A DNS-1123 label, so that ``tenant-NAME`` is a valid Secret name and a safe file name.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_MAX_SECRET_NAME = 63
# The tenant id travels in the x-tenant-id header and in metric labels: no whitespace or control characters.
_TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,252}")


def new_key() -> str:
    """A fresh API key: ``tlabs_sk_`` and 32 random bytes, URL-safe base64."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def secret_name(name: str) -> str:
    """``tenant-NAME``; ``ValueError`` when NAME is not a lowercase DNS label or the result exceeds 63 chars."""
    full = SECRET_PREFIX + name
    if not _NAME.fullmatch(name) or len(full) > _MAX_SECRET_NAME:
        raise ValueError(
            f"{name!r} is not a valid tenant name (lowercase letters, digits and '-', starting and ending with a "
            f"letter or digit, at most {_MAX_SECRET_NAME - len(SECRET_PREFIX)} characters)"
        )
    return full


def tenant_name(secret: str) -> str | None:
    """The tenant NAME a Secret name stands for, ``None`` when it does not follow the ``tenant-NAME`` scheme."""
    name = secret.removeprefix(SECRET_PREFIX)
    return name if name != secret and _NAME.fullmatch(name) else None


def check_tenant_id(tenant_id: str) -> str:
    """The tenant id unchanged; ``ValueError`` unless it is 1-253 of ``A-Z a-z 0-9 . _ : @ -``, starting with a
    letter or digit."""
    if not _TENANT_ID.fullmatch(tenant_id):
        raise ValueError(
            f"{tenant_id!r} is not a valid tenant id (letters, digits and . _ : @ -, starting with a letter or digit)"
        )
    return tenant_id


def tenant_secret(name: str, *, tenant_id: str, tier: str, key: str, namespace: str) -> dict[str, Any]:
    """A complete Secret manifest for tenant NAME with the key in ``stringData``."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name(name),
            "namespace": namespace,
            "labels": dict(LABELS),
            "annotations": {TIER_ANNOTATION: tier, TENANT_ANNOTATION: tenant_id},
        },
        "type": "Opaque",
        "stringData": {KEY_FIELD: key},
    }


def manifest_of(document: Mapping[str, Any], *, key: str | None, tier: str | None = None) -> dict[str, Any]:
    """An appliable copy of a stored Secret: its name, namespace, labels, annotations and type, none of the
    server-set fields. With ``key``, the key goes in ``stringData``; without, the copy holds no key at all (applied,
    it changes metadata only). ``tier`` replaces the tier annotation."""
    meta = document.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED_ANNOTATION}
    if tier is not None:
        annotations[TIER_ANNOTATION] = tier
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "labels": dict(meta.get("labels") or {}),
            "annotations": annotations,
        },
        "type": document.get("type") or "Opaque",
    }
    if key is not None:
        manifest["stringData"] = {KEY_FIELD: key}
    return manifest


def encoded(document: Mapping[str, Any]) -> dict[str, Any]:
    """The same Secret with ``stringData.api_key`` moved to base64 ``data.api_key``: the API server stores
    ``data`` only, so what is sent is what a later read returns."""
    result = copy.deepcopy(dict(document))
    string_data = result.pop("stringData", None) or {}
    data = result.setdefault("data", {})
    for field, value in string_data.items():
        data[field] = base64.b64encode(str(value).encode("utf-8")).decode("ascii")
    return result
