import base64
from typing import Any

import pytest

from authz.secrets import Rejection, Tenant, key_digest, parse_secret
from authz.snapshot import build_snapshot

TIERS = {"free", "pro"}


def secret(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "tenant-acme",
            "namespace": "kuadrant-system",
            "labels": {"authorino.kuadrant.io/managed-by": "authorino"},
            "annotations": {"kuadrant.io/groups": "pro", "secret.kuadrant.io/user-id": "acme"},
        },
        "stringData": {"api_key": "tlabs_sk_acme"},
    }
    document.update(overrides)
    return document


def test_string_data_key_becomes_a_digest_only_tenant() -> None:
    tenant = parse_secret(secret(), TIERS)
    assert tenant == Tenant("acme", "pro", "kuadrant-system/tenant-acme", key_digest("tlabs_sk_acme"))
    assert "tlabs_sk_acme" not in repr(tenant)


def test_base64_data_key_is_accepted() -> None:
    encoded = base64.b64encode(b"tlabs_sk_b64").decode()
    tenant = parse_secret(secret(stringData=None, data={"api_key": encoded}), TIERS)
    assert isinstance(tenant, Tenant) and tenant.key_digest == key_digest("tlabs_sk_b64")


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (secret(metadata={"name": "x"}), "no annotations"),
        (secret(metadata={"name": "x", "annotations": {"secret.kuadrant.io/user-id": "a"}}), "kuadrant.io/groups"),
        (secret(metadata={"name": "x", "annotations": {"kuadrant.io/groups": "pro"}}), "user-id"),
        (
            secret(
                metadata={"name": "x", "annotations": {"kuadrant.io/groups": "gold", "secret.kuadrant.io/user-id": "a"}}
            ),
            "unknown tier 'gold'",
        ),
        (secret(stringData={"api_key": "  "}), "empty api_key"),
        (secret(stringData=None), "no api_key"),
        (secret(stringData=None, data={"api_key": "%%%"}), "not valid base64"),
    ],
)
def test_unusable_secrets_are_rejected_with_a_reason(document: dict[str, Any], reason: str) -> None:
    result = parse_secret(document, TIERS)
    assert isinstance(result, Rejection)
    assert reason in result.reason


def test_other_kinds_are_ignored() -> None:
    assert parse_secret({"kind": "ConfigMap"}, TIERS) is None
    assert parse_secret(["not", "a", "mapping"], TIERS) is None


def test_duplicate_keys_refuse_both_secrets() -> None:
    first = Tenant("a", "pro", "ns/a", key_digest("same"))
    second = Tenant("b", "pro", "ns/b", key_digest("same"))
    third = Tenant("c", "pro", "ns/c", key_digest("other"))
    snapshot = build_snapshot([first, second, third])
    assert list(snapshot.by_digest.values()) == [third]
    assert {r.secret for r in snapshot.rejections} == {"ns/a", "ns/b"}
