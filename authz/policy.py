"""The authorization decision: pure functions over plain values, in two phases around one store round trip.

``identify`` (before the store): who is calling and may they make this request at all. The key's digest is looked
up in a dict (no loop over keys) and the match confirmed with a constant-time compare; a key whose Secret was
refused gets 403 with the reason; the tier must allow the endpoint; a body declared larger than the maximum gets
413 before Envoy would buffer it. ``judge`` (after the store): turn the rate-limit admission into an answer with
OpenAI's ``x-ratelimit-*-requests`` headers.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from authz.secrets import Tenant, key_digest
from authz.snapshot import TenantSnapshot
from authz.tiers import TierPolicy
from tokenlabs.errors import BodyTooLarge, InvalidApiKey, PermissionDenied, RateLimited, RequestError
from tokenlabs.quota.headers import HeaderPairs, ratelimit_headers, retry_after
from tokenlabs.quota.windows import Admission


@dataclass(frozen=True)
class Identified:
    tenant: Tenant
    policy: TierPolicy


@dataclass(frozen=True)
class Allow:
    tenant: Tenant
    response_headers: HeaderPairs = ()  # for the client's response


@dataclass(frozen=True)
class Deny:
    error: RequestError
    reason: str  # a short label for metrics and logs
    headers: HeaderPairs = ()


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
    return int(value) if value.isascii() and value.isdigit() else None


def request_path(path: str) -> str:
    """The path without query string or fragment, as tier endpoint lists name it."""
    return path.partition("?")[0].partition("#")[0]


def identify(
    key: str | None,
    length: int | None,
    path: str,
    snapshot: TenantSnapshot,
    policies: Mapping[str, TierPolicy],
    max_body_bytes: int,
) -> Identified | Deny:
    if key is None:
        return Deny(
            InvalidApiKey("Missing API key. Send 'Authorization: Bearer <key>' or 'x-api-key: <key>'."),
            "missing_key",
        )
    digest = key_digest(key)
    tenant = snapshot.by_digest.get(digest)
    if tenant is None or not hmac.compare_digest(tenant.key_digest, digest):
        refused = snapshot.refused.get(digest)
        if refused is not None and refused.key_digest is not None and hmac.compare_digest(refused.key_digest, digest):
            return Deny(PermissionDenied(f"This API key is not usable: {refused.reason}."), "key_refused")
        return Deny(InvalidApiKey("Incorrect API key provided."), "unknown_key")
    policy = policies[tenant.tier]
    if not policy.allows_endpoint(request_path(path)):
        return Deny(
            PermissionDenied(f"The '{tenant.tier}' tier may not use {request_path(path)}."), "endpoint_not_allowed"
        )
    if length is not None and length > max_body_bytes:
        return Deny(
            BodyTooLarge(f"The request body is too large; the maximum is {max_body_bytes} bytes."),
            "body_too_large",
        )
    return Identified(tenant, policy)


def judge(identified: Identified, admission: Admission | None) -> Allow | Deny:
    """``admission`` is ``None`` when the tier has no request limits (nothing was counted)."""
    if admission is None:
        return Allow(identified.tenant)
    headers = ratelimit_headers("requests", admission.binding)
    if admission.admitted:
        return Allow(identified.tenant, headers)
    wait = retry_after(admission.retry_after_s)
    blocked = ", ".join(f"{s.limit.limit} per {s.limit.name}" for s in admission.windows if not s.fits)
    error = RateLimited(
        f"Rate limit reached for requests ({blocked}) on tier '{identified.policy.name}'. Retry after {wait}s.",
        retry_after_s=wait,
    )
    return Deny(error, "rate_limited", headers)
