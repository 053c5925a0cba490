import base64
import re

import pytest

from authz.admin.manifest import (
    LAST_APPLIED_ANNOTATION,
    check_tenant_id,
    encoded,
    manifest_of,
    new_key,
    secret_name,
    tenant_name,
    tenant_secret,
)
from authz.secrets import Tenant, api_key, key_digest, parse_secret

TIERS = frozenset({"free", "pro"})


def test_new_keys_are_prefixed_url_safe_and_distinct() -> None:
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert re.fullmatch(r"tlabs_sk_[A-Za-z0-9_-]{43}", key)


@pytest.mark.parametrize("name", ["acme", "a", "acme-2", "0x", "a" * 56])
def test_valid_names_map_to_tenant_secrets_and_back(name: str) -> None:
    assert secret_name(name) == f"tenant-{name}"
    assert tenant_name(secret_name(name)) == name


@pytest.mark.parametrize("name", ["", "Acme", "acme_corp", "-acme", "acme-", "a.b", "a/b", "..", "a" * 57])
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a valid tenant name"):
        secret_name(name)


def test_secrets_outside_the_naming_scheme_have_no_tenant_name() -> None:
    assert tenant_name("acme") is None
    assert tenant_name("tenant-") is None
    assert tenant_name("tenant-Bad_Name") is None


@pytest.mark.parametrize("tenant_id", ["acme", "ACME.corp", "team:a@b_c-d", "7"])
def test_valid_tenant_ids(tenant_id: str) -> None:
    assert check_tenant_id(tenant_id) == tenant_id


@pytest.mark.parametrize("tenant_id", ["", " acme", "acme corp", "acme\n", "-acme", "a/b", "a" * 254])
def test_invalid_tenant_ids_are_refused(tenant_id: str) -> None:
    with pytest.raises(ValueError, match="not a valid tenant id"):
        check_tenant_id(tenant_id)


def test_tenant_secret_is_a_live_authorino_secret() -> None:
    key = new_key()
    document = tenant_secret("acme", tenant_id="acme-corp", tier="pro", key=key, namespace="ns")
    assert document["metadata"]["labels"] == {"authorino.kuadrant.io/managed-by": "authorino", "app": "token-labs"}
    assert document["stringData"] == {"api_key": key}
    assert parse_secret(document, TIERS) == Tenant("acme-corp", "pro", "ns/tenant-acme", key_digest(key))


def test_encoded_moves_the_key_to_base64_data() -> None:
    document = tenant_secret("acme", tenant_id="acme", tier="pro", key="k1", namespace="ns")
    result = encoded(document)
    assert "stringData" not in result
    assert result["data"] == {"api_key": base64.b64encode(b"k1").decode()}
    assert api_key(result) == "k1"
    assert document["stringData"] == {"api_key": "k1"}, "the input is left alone"


def stored_secret() -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "tenant-acme",
            "namespace": "ns",
            "uid": "1234",
            "resourceVersion": "42",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl"}],
            "labels": {"authorino.kuadrant.io/managed-by": "authorino", "team": "a"},
            "annotations": {
                "kuadrant.io/groups": "free",
                "secret.kuadrant.io/user-id": "acme",
                LAST_APPLIED_ANNOTATION: '{"stringData": {"api_key": "old-key"}}',
            },
        },
        "type": "Opaque",
        "data": {"api_key": base64.b64encode(b"old-key").decode()},
    }


def test_manifest_of_keeps_identity_and_drops_server_fields_and_the_old_key() -> None:
    manifest = manifest_of(stored_secret(), key="new-key")
    assert manifest == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "tenant-acme",
            "namespace": "ns",
            "labels": {"authorino.kuadrant.io/managed-by": "authorino", "team": "a"},
            "annotations": {"kuadrant.io/groups": "free", "secret.kuadrant.io/user-id": "acme"},
        },
        "type": "Opaque",
        "stringData": {"api_key": "new-key"},
    }


def test_manifest_of_without_a_key_holds_no_key_at_all() -> None:
    manifest = manifest_of(stored_secret(), key=None, tier="pro")
    assert "old-key" not in repr(manifest)
    assert "stringData" not in manifest
    assert "data" not in manifest
    assert manifest["metadata"]["annotations"]["kuadrant.io/groups"] == "pro"
