"""The names of the counters each server keeps per tenant, in one place: authz counts requests, extproc tokens,
and the usage service reads both."""

from __future__ import annotations


def requests_scope(tenant_id: str) -> str:
    return f"requests:{tenant_id}"


def tokens_scope(tenant_id: str) -> str:
    return f"tokens:{tenant_id}"


def prompt_tokens_scope(tenant_id: str) -> str:
    return f"prompt_tokens:{tenant_id}"


def completion_tokens_scope(tenant_id: str) -> str:
    return f"completion_tokens:{tenant_id}"
