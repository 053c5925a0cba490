"""``KubernetesStore`` with the real client over HTTP against the stand-in API of ``tests.kube_api``."""

import base64
import socket
from typing import Any

import pytest
from kubernetes import client

from authz.admin import AlreadyExists, NotFound, StoreError
from authz.admin import kubernetes as kubernetes_store
from authz.admin.kubernetes import KubernetesStore
from authz.admin.manifest import tenant_secret
from authz.secrets import Tenant, key_digest, parse_secret
from tests.kube_api import KubeApi

TIERS = frozenset({"free", "pro"})
SELECTOR = "authorino.kuadrant.io/managed-by=authorino"


@pytest.fixture
def store(kube_api: KubeApi) -> KubernetesStore:
    return KubernetesStore(kube_api.core_api(), "ns", SELECTOR)


def secret(name: str = "acme", tier: str = "pro", key: str = "key-1") -> dict[str, Any]:
    return tenant_secret(name, tenant_id=name, tier=tier, key=key, namespace="ns")


def unreachable(host: str) -> KubernetesStore:
    configuration = client.Configuration(host=host)
    configuration.retries = 0
    return KubernetesStore(client.CoreV1Api(client.ApiClient(configuration)), "ns", SELECTOR)


def test_create_stores_a_live_tenant_secret(store: KubernetesStore, kube_api: KubeApi) -> None:
    store.create(secret())
    [stored] = kube_api.secrets("ns")
    assert stored["data"] == {"api_key": base64.b64encode(b"key-1").decode()}
    assert stored["metadata"]["labels"] == {"authorino.kuadrant.io/managed-by": "authorino", "app": "token-labs"}
    assert parse_secret(store.get("tenant-acme"), TIERS) == Tenant("acme", "pro", "ns/tenant-acme", key_digest("key-1"))


def test_create_twice_is_already_exists(store: KubernetesStore) -> None:
    store.create(secret())
    with pytest.raises(AlreadyExists, match="tenant-acme already exists in namespace ns"):
        store.create(secret(key="key-2"))


def test_set_key_is_one_patch_and_the_old_key_is_gone(store: KubernetesStore, kube_api: KubeApi) -> None:
    store.create(secret())
    store.set_key("tenant-acme", "key-2")
    assert len(kube_api.requests("patch")) == 1
    [stored] = kube_api.secrets("ns")
    parsed = parse_secret(stored, TIERS)
    assert isinstance(parsed, Tenant) and parsed.key_digest == key_digest("key-2")


def test_set_key_replaces_a_key_applied_as_string_data(store: KubernetesStore, kube_api: KubeApi) -> None:
    kube_api.apply(secret(key="applied-key"))
    store.set_key("tenant-acme", "key-2")
    parsed = parse_secret(store.get("tenant-acme"), TIERS)
    assert isinstance(parsed, Tenant) and parsed.key_digest == key_digest("key-2")


def test_set_tier_changes_only_the_tier(store: KubernetesStore, kube_api: KubeApi) -> None:
    store.create(secret())
    store.set_tier("tenant-acme", "free")
    [stored] = kube_api.secrets("ns")
    assert parse_secret(stored, TIERS) == Tenant("acme", "free", "ns/tenant-acme", key_digest("key-1"))
    assert stored["metadata"]["labels"]["app"] == "token-labs"


def test_delete_then_every_operation_is_not_found(store: KubernetesStore, kube_api: KubeApi) -> None:
    store.create(secret())
    store.delete("tenant-acme")
    assert kube_api.secrets("ns") == []
    with pytest.raises(NotFound, match="tenant-acme not found in namespace ns"):
        store.get("tenant-acme")
    with pytest.raises(NotFound):
        store.delete("tenant-acme")
    with pytest.raises(NotFound):
        store.set_key("tenant-acme", "key-2")
    with pytest.raises(NotFound):
        store.set_tier("tenant-acme", "free")


def test_list_asks_for_the_label_selector_and_reports_status(store: KubernetesStore, kube_api: KubeApi) -> None:
    store.create(secret("acme"))
    store.create(secret("gold", tier="gold", key="key-gold"))
    kube_api.apply_secret("unlabelled", "key-u", namespace="ns", labels={})
    found = {record.secret: record for record in store.list_tenants(TIERS)}
    assert [params["labelSelector"] for params in kube_api.requests("list")] == [SELECTOR]
    assert set(found) == {"tenant-acme", "tenant-gold"}
    assert found["tenant-acme"].live and found["tenant-acme"].tenant_id == "acme"
    assert found["tenant-acme"].created is not None
    assert not found["tenant-gold"].live and found["tenant-gold"].reason == "unknown tier 'gold'"


def test_an_api_error_names_status_and_message(store: KubernetesStore, kube_api: KubeApi) -> None:
    kube_api.fail_next("list", 403)
    with pytest.raises(StoreError) as caught:
        store.list_tenants(TIERS)
    assert str(caught.value) == "Kubernetes API error 403 Forbidden (namespace ns): injected fault on list"


def test_a_404_on_create_is_about_the_namespace_not_the_secret(store: KubernetesStore, kube_api: KubeApi) -> None:
    kube_api.fail_next("create", 404)
    with pytest.raises(StoreError, match=r"Kubernetes API error 404 Not Found \(namespace ns\)"):
        store.create(secret())


def test_a_stopped_server_is_a_store_error(kube_api: KubeApi) -> None:
    store = unreachable(kube_api.url)
    kube_api.stop()
    with pytest.raises(StoreError, match=f"no answer from the Kubernetes API at {kube_api.url}"):
        store.get("tenant-acme")


def test_a_silent_server_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kubernetes_store, "REQUEST_TIMEOUT_S", 0.1)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never answers
        host, port = silent.getsockname()[:2]
        with pytest.raises(StoreError, match=f"no answer from the Kubernetes API at http://{host}:{port}"):
            unreachable(f"http://{host}:{port}").get("tenant-acme")
