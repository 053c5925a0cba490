"""``tokenlabs tenants`` end to end through ``tokenlabs.cli.main``: the directory store on a temporary folder, the
Kubernetes store against the stand-in API of ``tests.kube_api`` over HTTP, with the real client and a kubeconfig."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.secrets import Rejection, Tenant, key_digest, parse_secret
from authz.sources.directory import read_directory
from tests.helpers import REPO, repo_settings
from tests.kube_api import KubeApi
from tokenlabs.cli import main

CONFIG = str(REPO / "tokenlabs.yaml")
TIERS = frozenset(repo_settings().tiers)
Run = Callable[..., tuple[int, str, str]]
DEMO_KEYS = ("tlabs_free_demo_key_change_me", "tlabs_pro_demo_key_change_me")


@pytest.fixture
def tenants_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("TOKENLABS_CONFIG", "KUBECONFIG", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    directory = tmp_path / "tenants"
    shutil.copytree(REPO / "manifests/examples/tenants", directory)
    return directory


def tenants(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(["tenants", *argv, "--config", CONFIG])
    out, err = capsys.readouterr()
    return status, out, err


def in_dir(directory: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return tenants(capsys, *argv, "--directory", str(directory))


def test_create_prints_only_the_key_once_and_authz_accepts_it(
    tenants_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = in_dir(tenants_dir, capsys, "create", "acme", "--tier", "pro", "--tenant-id", "acme-corp")
    assert status == 0
    key = out.strip()
    assert out == key + "\n" and key.startswith("tlabs_sk_")
    assert err.count("\n") == 1 and "will not be shown again" in err and key not in err
    tenant = read_directory(tenants_dir, TIERS).by_digest[key_digest(key)]
    assert (tenant.tenant_id, tenant.tier) == ("acme-corp", "pro")


def test_create_yaml_prints_an_accepted_manifest_and_applies_nothing(
    tenants_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sorted(path.name for path in tenants_dir.iterdir())
    status, out, err = in_dir(tenants_dir, capsys, "create", "acme", "--tier", "enterprise", "-o", "yaml")
    assert status == 0 and "will not be shown again" in err
    document = yaml.safe_load(out)
    key = document["stringData"]["api_key"]
    assert out.count(key) == 1
    assert parse_secret(document, TIERS) == Tenant("acme", "enterprise", "kuadrant-system/tenant-acme", key_digest(key))
    assert sorted(path.name for path in tenants_dir.iterdir()) == before


def test_create_refuses_a_duplicate_with_status_1(tenants_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = in_dir(tenants_dir, capsys, "create", "free-demo", "--tier", "pro")
    assert status == 1
    assert err == f"tokenlabs tenants create: tenant-free-demo already exists in directory {tenants_dir} " + (
        "(tenant-free-demo.yaml)\n"
    )


def test_rotate_kills_the_old_key(tenants_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, old, _ = in_dir(tenants_dir, capsys, "create", "acme", "--tier", "pro")
    status, out, err = in_dir(tenants_dir, capsys, "rotate", "acme")
    assert status == 0 and "will not be shown again" in err
    new = out.strip()
    assert new != old.strip()
    live = read_directory(tenants_dir, TIERS).by_digest
    assert key_digest(old.strip()) not in live
    assert live[key_digest(new)].tenant_id == "acme"


def test_rotate_yaml_leaves_the_secret_alone(tenants_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = in_dir(tenants_dir, capsys, "rotate", "pro-demo", "-o", "yaml")
    assert status == 0
    document = yaml.safe_load(out)
    new = document["stringData"]["api_key"]
    assert new.startswith("tlabs_sk_") and DEMO_KEYS[1] not in out
    assert parse_secret(document, TIERS) == Tenant(
        "pro-demo", "pro", "kuadrant-system/tenant-pro-demo", key_digest(new)
    )
    assert key_digest(DEMO_KEYS[1]) in read_directory(tenants_dir, TIERS).by_digest


def test_set_tier_moves_the_tenant(tenants_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = in_dir(tenants_dir, capsys, "set-tier", "free-demo", "enterprise")
    assert status == 0 and DEMO_KEYS[0] not in out
    assert read_directory(tenants_dir, TIERS).by_digest[key_digest(DEMO_KEYS[0])].tier == "enterprise"


def test_set_tier_yaml_prints_no_key(tenants_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = in_dir(tenants_dir, capsys, "set-tier", "free-demo", "pro", "-o", "yaml")
    assert status == 0
    document = yaml.safe_load(out)
    assert document["metadata"]["annotations"]["kuadrant.io/groups"] == "pro"
    assert "stringData" not in document and "data" not in document
    assert DEMO_KEYS[0] not in out + err
    assert read_directory(tenants_dir, TIERS).by_digest[key_digest(DEMO_KEYS[0])].tier == "free"


def test_set_tier_to_an_unknown_tier_lists_the_tiers(tenants_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = in_dir(tenants_dir, capsys, "set-tier", "free-demo", "gold")
    assert (status, out) == (2, "")
    assert err == (
        f"tokenlabs tenants set-tier: unknown tier 'gold'; the tiers configured in {CONFIG} are: "
        "free, pro, enterprise\n"
    )


def test_revoke_deletes_and_a_second_revoke_is_not_found(tenants_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert in_dir(tenants_dir, capsys, "revoke", "free-demo")[0] == 0
    assert key_digest(DEMO_KEYS[0]) not in read_directory(tenants_dir, TIERS).by_digest
    status, _, err = in_dir(tenants_dir, capsys, "revoke", "free-demo")
    assert status == 1
    assert err == f"tokenlabs tenants revoke: tenant-free-demo not found in directory {tenants_dir}\n"


@pytest.mark.parametrize("output", ["table", "json", "yaml"])
def test_list_shows_status_and_never_a_key(tenants_dir: Path, capsys: pytest.CaptureFixture[str], output: str) -> None:
    created = in_dir(tenants_dir, capsys, "create", "acme", "--tier", "pro")[1].strip()
    rotated = in_dir(tenants_dir, capsys, "rotate", "acme")[1].strip()
    gold = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "tenant-gold",
            "annotations": {"kuadrant.io/groups": "gold", "secret.kuadrant.io/user-id": "g"},
        },
        "stringData": {"api_key": "tlabs_sk_gold_key"},
    }
    (tenants_dir / "tenant-gold.yaml").write_text(yaml.safe_dump(gold), encoding="utf-8")
    status, out, err = in_dir(tenants_dir, capsys, "list", "-o", output)
    assert status == 0
    for key in (*DEMO_KEYS, created, rotated, "tlabs_sk_gold_key"):
        assert key not in out + err
    assert "tlabs_" not in out + err, "no key of any kind"
    if output == "table":
        lines = out.splitlines()
        assert lines[0].split() == ["NAME", "SECRET", "TENANT", "TIER", "STATUS", "CREATED", "REASON"]
        assert [line.split()[:5] for line in lines[1:]] == [
            ["acme", "tenant-acme", "acme", "pro", "live"],
            ["free-demo", "tenant-free-demo", "free-demo", "free", "live"],
            ["gold", "tenant-gold", "g", "gold", "refused"],
            ["pro-demo", "tenant-pro-demo", "pro-demo", "pro", "live"],
        ]
        assert lines[3].endswith("unknown tier 'gold'")
    else:
        records = json.loads(out) if output == "json" else yaml.safe_load(out)
        by_secret: dict[str, Any] = {record["secret"]: record for record in records}
        assert by_secret["tenant-gold"] | {"created": None} == {
            "name": "gold",
            "secret": "tenant-gold",
            "tenant": "g",
            "tier": "gold",
            "status": "refused",
            "reason": "unknown tier 'gold'",
            "created": None,
        }
        assert by_secret["tenant-acme"]["status"] == "live" and by_secret["tenant-acme"]["created"].endswith("Z")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["create", "Bad_Name", "--tier", "pro"], "is not a valid tenant name"),
        (["create", "acme", "--tier", "pro", "--tenant-id", "a b"], "is not a valid tenant id"),
        (["create", "acme"], "the following arguments are required: --tier"),
        (["list", "-o", "csv"], "invalid choice: 'csv'"),
    ],
)
def test_usage_errors_exit_2(
    tenants_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        in_dir(tenants_dir, capsys, *argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_config_errors_exit_2(tenants_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = tenants(capsys, "list", "--directory", str(tmp_path / "missing"))
    assert status == 2 and "tenants.directory" in err and "is not an existing directory" in err
    status, _, err = tenants(capsys, "list", "--source", "kubernetes", "--directory", str(tenants_dir))
    assert (status, err) == (2, "tokenlabs tenants list: --directory applies to --source directory only\n")
    status, _, err = tenants(capsys, "list", "--source", "kubernetes", "--kubeconfig", str(tmp_path / "none"))
    assert status == 2 and "no usable cluster configuration" in err
    with pytest.raises(SystemExit) as exited:
        main(["tenants", "list", "--config", str(tmp_path / "none.yaml")])
    assert exited.value.code == 2


@pytest.fixture
def in_cluster(kube_api: KubeApi, tmp_path: Path, tenants_dir: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    """``tokenlabs tenants`` against the stand-in API, through a kubeconfig, namespace ``tenants``."""
    kubeconfig = str(kube_api.write_kubeconfig(tmp_path / "kubeconfig"))

    def run(*argv: str) -> tuple[int, str, str]:
        return tenants(capsys, *argv, "--source", "kubernetes", "--kubeconfig", kubeconfig, "--namespace", "tenants")

    return run


def stored_tenant(kube_api: KubeApi) -> Tenant | Rejection | None:
    [stored] = kube_api.secrets("tenants")
    return parse_secret(stored, TIERS)


def test_kubernetes_lifecycle(kube_api: KubeApi, in_cluster: Run) -> None:
    status, out, err = in_cluster("create", "acme", "--tier", "pro")
    assert status == 0 and "namespace tenants" in err
    first = out.strip()
    assert stored_tenant(kube_api) == Tenant("acme", "pro", "tenants/tenant-acme", key_digest(first))

    status, _, err = in_cluster("create", "acme", "--tier", "pro")
    assert (status, err) == (1, "tokenlabs tenants create: tenant-acme already exists in namespace tenants\n")

    status, out, _ = in_cluster("rotate", "acme")
    second = out.strip()
    assert status == 0 and second != first
    assert stored_tenant(kube_api) == Tenant("acme", "pro", "tenants/tenant-acme", key_digest(second))

    assert in_cluster("set-tier", "acme", "free")[0] == 0
    status, out, err = in_cluster("list", "-o", "json")
    assert status == 0 and "tlabs_" not in out + err
    assert [(r["secret"], r["tier"], r["status"]) for r in json.loads(out)] == [("tenant-acme", "free", "live")]

    assert in_cluster("revoke", "acme")[0] == 0
    assert kube_api.secrets("tenants") == []
    status, _, err = in_cluster("revoke", "acme")
    assert (status, err) == (1, "tokenlabs tenants revoke: tenant-acme not found in namespace tenants\n")


def test_kubernetes_create_yaml_applies_and_rotates(kube_api: KubeApi, in_cluster: Run) -> None:
    status, out, _ = in_cluster("create", "acme", "--tier", "enterprise", "-o", "yaml")
    assert status == 0
    document = yaml.safe_load(out)
    printed = document["stringData"]["api_key"]
    kube_api.apply(document)
    assert stored_tenant(kube_api) == Tenant("acme", "enterprise", "tenants/tenant-acme", key_digest(printed))
    status, out, _ = in_cluster("list")
    assert status == 0 and "enterprise" in out and "tlabs_" not in out

    status, out, _ = in_cluster("rotate", "acme")
    tenant = stored_tenant(kube_api)
    assert status == 0 and isinstance(tenant, Tenant)
    assert tenant.key_digest == key_digest(out.strip()) != key_digest(printed)


def test_kubernetes_api_errors_are_status_1(kube_api: KubeApi, in_cluster: Run) -> None:
    kube_api.fail_next("list", 403)
    status, _, err = in_cluster("list")
    assert (status, err) == (
        1,
        "tokenlabs tenants list: Kubernetes API error 403 Forbidden (namespace tenants): injected fault on list\n",
    )
    kube_api.stop()
    status, _, err = in_cluster("list")
    assert status == 1 and err.startswith(
        f"tokenlabs tenants list: no answer from the Kubernetes API at {kube_api.url}"
    )
