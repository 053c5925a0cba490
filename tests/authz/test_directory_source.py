import asyncio
from pathlib import Path

import yaml

from authz.secrets import key_digest
from authz.snapshot import TenantSnapshot
from authz.sources.directory import DirectoryTenantSource, read_directory

REPO = Path(__file__).resolve().parents[2]


def write_secret(directory: Path, name: str, key: str, tier: str = "pro") -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "kind": "Secret",
                "metadata": {
                    "name": name,
                    "annotations": {"kuadrant.io/groups": tier, "secret.kuadrant.io/user-id": name},
                },
                "stringData": {"api_key": key},
            }
        )
    )
    return path


def test_demo_tenants_load() -> None:
    snapshot = read_directory(REPO / "manifests/examples/tenants", frozenset({"free", "pro", "enterprise"}))
    tiers = {tenant.tenant_id: tenant.tier for tenant in snapshot.by_digest.values()}
    assert tiers == {"free-demo": "free", "pro-demo": "pro"}
    assert snapshot.by_digest[key_digest("tlabs_pro_demo_key_change_me")].tenant_id == "pro-demo"


def test_broken_file_is_reported_and_others_still_load(tmp_path: Path) -> None:
    write_secret(tmp_path, "good", "k1")
    (tmp_path / "broken.yaml").write_text("kind: Secret\nmetadata: [unclosed")
    (tmp_path / "binary.yml").write_bytes(b"\xff\xfe\x00")
    snapshot = read_directory(tmp_path, frozenset({"pro"}))
    assert len(snapshot) == 1
    assert {r.secret for r in snapshot.rejections} == {"file:broken.yaml", "file:binary.yml"}


async def test_changes_are_published_within_a_poll(tmp_path: Path) -> None:
    published: asyncio.Queue[TenantSnapshot] = asyncio.Queue()
    source = DirectoryTenantSource(tmp_path, frozenset({"pro"}), published.put_nowait, poll_interval_s=0.05)
    await source.start()
    try:
        assert len(published.get_nowait()) == 0
        path = write_secret(tmp_path, "acme", "tlabs_sk_acme")
        added = await asyncio.wait_for(published.get(), 2.0)
        assert key_digest("tlabs_sk_acme") in added.by_digest and source.current is added
        path.unlink()
        removed = await asyncio.wait_for(published.get(), 2.0)
        assert len(removed) == 0 and source.current is removed
    finally:
        await source.stop()
