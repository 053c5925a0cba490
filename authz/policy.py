"""The authorization decision: pure, over plain values.

``decide(key, content_length, snapshot, limits)`` looks the key's digest up (a dict lookup: no loop over keys),
confirms the match with a constant-time compare, and refuses bodies that declare more than the configured maximum
(answered here, before Envoy buffers them: a body over Envoy's buffer stalls a buffered ext_proc instead of
failing). Request-rate limits join here in the rate-limit issue.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from authz.secrets import Tenant, key_digest
from authz.snapshot import TenantSnapshot
from tokenlabs.errors import BodyTooLarge, InvalidApiKey, RequestError


@dataclass(frozen=True)
class Allow:
    tenant: Tenant


@dataclass(frozen=True)
class Deny:
    error: RequestError
    reason: str  # a short label for metrics and logs


def credential(headers: Mapping[str, str]) -> str | None:
    """The API key from ``Authorization: Bearer <key>``, else ``x-api-key``; ``None`` if neither is usable."""
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    key = headers.get("x-api-key", "").strip()
    return key or None


def content_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get("content-length", "").strip()
    return int(value) if value.isdigit() else None


def decide(key: str | None, length: int | None, snapshot: TenantSnapshot, max_body_bytes: int) -> Allow | Deny:
    if key is None:
        return Deny(
            InvalidApiKey("Missing API key. Send 'Authorization: Bearer <key>' or 'x-api-key: <key>'."),
            "missing_key",
        )
    digest = key_digest(key)
    tenant = snapshot.by_digest.get(digest)
    if tenant is None or not hmac.compare_digest(tenant.key_digest, digest):
        return Deny(InvalidApiKey("Incorrect API key provided."), "unknown_key")
    if length is not None and length > max_body_bytes:
        return Deny(
            BodyTooLarge(f"The request body is too large; the maximum is {max_body_bytes} bytes."),
            "body_too_large",
        )
    return Allow(tenant)
