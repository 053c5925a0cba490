"""Checked-in generated code equals a fresh generation, and the protos pass `buf lint`."""

import shutil
import subprocess
from pathlib import Path

from tokenlabs.protogen import REPO, generate, proto_files


def test_regenerating_gives_identical_files(tmp_path: Path) -> None:
    generate(tmp_path)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*"))
    assert fresh, "protoc produced nothing"
    for relative in fresh:
        assert (tmp_path / relative).read_bytes() == (REPO / relative).read_bytes(), f"{relative} is stale: make protos"


def test_buf_lint_passes() -> None:
    buf = shutil.which("buf") or str(Path(__import__("sys").executable).parent / "buf")
    result = subprocess.run([buf, "lint"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_usage_service_is_importable() -> None:
    from tokenlabs.v1 import usage_pb2, usage_pb2_grpc

    assert usage_pb2.DESCRIPTOR.services_by_name["UsageService"].full_name == "tokenlabs.v1.UsageService"
    assert hasattr(usage_pb2_grpc, "UsageServiceStub")
    assert [p.name for p in proto_files()] == ["usage.proto"]
