import base64
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.admin import AlreadyExists, NotFound, StoreError
from authz.admin.directory import DirectoryStore
from authz.admin.manifest import tenant_secret
from authz.secrets import key_digest
from authz.sources.directory import read_directory
from tokenlabs.errors import ConfigError

TIERS = frozenset({"free", "pro"})


@pytest.fixture
def store(tmp_path: Path) -> DirectoryStore:
    return DirectoryStore(tmp_path, "ns")


def secret(name: str = "acme", tier: str = "pro", key: str = "key-1") -> dict[str, Any]:
    return tenant_secret(name, tenant_id=name, tier=tier, key=key, namespace="ns")


def write(path: Path, *documents: Any) -> None:
    path.write_text(yaml.safe_dump_all(documents), encoding="utf-8")


def test_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tenants\.directory"):
        DirectoryStore(tmp_path / "nope", "ns")


def test_create_writes_one_private_file_that_authz_reads(store: DirectoryStore, tmp_path: Path) -> None:
    store.create(secret())
    path = tmp_path / "tenant-acme.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["tenant-acme.yaml"], "no temporary file is left behind"
    snapshot = read_directory(tmp_path, TIERS)
    assert snapshot.by_digest[key_digest("key-1")].tenant_id == "acme"
    assert store.get("tenant-acme")["metadata"]["creationTimestamp"].endswith("Z")


def test_create_refuses_an_existing_secret_in_any_file(store: DirectoryStore, tmp_path: Path) -> None:
    store.create(secret())
    with pytest.raises(AlreadyExists, match="tenant-acme already exists"):
        store.create(secret(key="key-2"))
    write(tmp_path / "all.yaml", {"kind": "ConfigMap"}, secret("bob"))
    with pytest.raises(AlreadyExists, match=r"tenant-bob already exists .*all\.yaml"):
        store.create(secret("bob"))
    assert not (tmp_path / "tenant-bob.yaml").exists()
    assert store.get("tenant-acme")["stringData"]["api_key"] == "key-1"


def test_set_key_kills_the_old_key_also_from_base64_data(store: DirectoryStore, tmp_path: Path) -> None:
    hand_written = secret()
    del hand_written["stringData"]
    hand_written["data"] = {"api_key": base64.b64encode(b"key-1").decode(), "note": "a2VlcA=="}
    write(tmp_path / "tenant-acme.yaml", hand_written)
    store.set_key("tenant-acme", "key-2")
    document = store.get("tenant-acme")
    assert document["stringData"] == {"api_key": "key-2"}
    assert document["data"] == {"note": "a2VlcA=="}
    snapshot = read_directory(tmp_path, TIERS)
    assert set(snapshot.by_digest) == {key_digest("key-2")}
    assert stat.S_IMODE((tmp_path / "tenant-acme.yaml").stat().st_mode) == 0o600


def test_set_tier_changes_only_the_tier(store: DirectoryStore) -> None:
    store.create(secret())
    before = store.get("tenant-acme")
    store.set_tier("tenant-acme", "free")
    after = store.get("tenant-acme")
    assert after["metadata"]["annotations"]["kuadrant.io/groups"] == "free"
    after["metadata"]["annotations"]["kuadrant.io/groups"] = "pro"
    assert after == before


def test_delete_removes_the_file(store: DirectoryStore, tmp_path: Path) -> None:
    store.create(secret())
    store.delete("tenant-acme")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(NotFound, match=f"tenant-acme not found in directory {tmp_path}"):
        store.delete("tenant-acme")


@pytest.mark.parametrize("operation", ["get", "set_key", "set_tier", "delete"])
def test_operations_on_a_missing_secret_say_not_found(store: DirectoryStore, operation: str) -> None:
    with pytest.raises(NotFound, match="tenant-ghost not found"):
        if operation in ("get", "delete"):
            getattr(store, operation)("tenant-ghost")
        else:
            getattr(store, operation)("tenant-ghost", "pro")


def test_files_it_did_not_write_are_left_to_the_operator(store: DirectoryStore, tmp_path: Path) -> None:
    write(tmp_path / "tenant-acme.yaml", secret(), secret("bob"))
    with pytest.raises(StoreError, match="does not hold just the Secret tenant-acme"):
        store.set_key("tenant-acme", "key-2")
    write(tmp_path / "tenants.yaml", secret("carol"))
    with pytest.raises(StoreError, match=r"tenant-carol is defined in tenants\.yaml"):
        store.delete("tenant-carol")
    assert (tmp_path / "tenants.yaml").exists()


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    store: DirectoryStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.create(secret())

    def broken_replace(source: str, target: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StoreError, match="No space left on device"):
        store.set_key("tenant-acme", "key-2")
    assert sorted(os.listdir(tmp_path)) == ["tenant-acme.yaml"]
    assert store.get("tenant-acme")["stringData"]["api_key"] == "key-1"


def test_list_reports_live_and_refused_like_authz(store: DirectoryStore, tmp_path: Path) -> None:
    store.create(secret("acme"))
    write(tmp_path / "gold.yaml", secret("gold", tier="gold", key="key-gold"))
    write(tmp_path / "twins.yml", secret("twin-a", key="same"), secret("twin-b", key="same"), {"kind": "ConfigMap"})
    (tmp_path / "broken.yaml").write_text("kind: [unclosed", encoding="utf-8")
    found = {record.secret: record for record in store.list_tenants(TIERS)}
    assert set(found) == {"tenant-acme", "tenant-gold", "tenant-twin-a", "tenant-twin-b", "file:broken.yaml"}
    assert found["tenant-acme"].live and found["tenant-acme"].name == "acme" and found["tenant-acme"].tier == "pro"
    assert not found["tenant-gold"].live and found["tenant-gold"].reason == "unknown tier 'gold'"
    assert found["tenant-twin-a"].reason == found["tenant-twin-b"].reason == "api_key duplicates another Secret's key"
    assert not found["file:broken.yaml"].live and "not valid YAML" in found["file:broken.yaml"].reason
    hand_written = found["tenant-gold"].created
    assert hand_written is not None and hand_written.timestamp() == pytest.approx(
        (tmp_path / "gold.yaml").stat().st_mtime, abs=1
    )
