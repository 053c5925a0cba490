"""Boot the real local stack (`tokenlabs dev`) on free ports for integration tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import yaml

from tokenlabs.devstack import on_free_ports
from tokenlabs.v1 import usage_pb2, usage_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
READY_MARKER = "tokenlabs dev ready"
FAST_SIM = {"ttft_base_ms": 2, "ttft_per_prompt_token_ms": 0.0, "itl_ms": 1}


def stack_config(workdir: Path, sim: dict[str, Any] | None = None) -> Path:
    """The shipped config with every port made free and tenants copied to a folder the test owns. The pro tier's
    request limits are lifted: the suite sends more than 100 requests a minute with the pro demo key (tests of
    limits create tenants of their own)."""
    document = on_free_ports(yaml.safe_load((REPO / "tokenlabs.yaml").read_text()))
    document["tiers"]["pro"].update(
        requests_per_minute=1_000_000,
        requests_per_day=100_000_000,
        tokens_per_minute=1_000_000_000,
        tokens_per_day=100_000_000_000,
    )
    tenants = workdir / "tenants"
    shutil.copytree(REPO / "manifests/examples/tenants", tenants)
    document["tenants"] = {"source": "directory", "directory": str(tenants)}
    for server in ("authz", "extproc", "epp"):
        document[server]["drain_seconds"] = 2
    document["engine"] = {"sim": dict(sim if sim is not None else FAST_SIM)}
    path = workdir / "tokenlabs.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def children_of(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    config: dict[str, Any]
    config_path: Path
    output: deque[str] = field(default_factory=lambda: deque(maxlen=400))

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.config['gateway']['port']}"

    def metrics_url(self, server: str) -> str:
        return f"http://127.0.0.1:{self.config[server]['metrics_port']}/metrics"

    def endpoints(self, pool: str) -> list[str]:
        return list(self.config["pools"][pool]["endpoints"])

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def child_pid(self, marker: str) -> int:
        """The pid of the child whose command line contains ``marker`` (e.g. ``serve epp``)."""
        for pid in children_of(self.process.pid):
            if marker in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode():
                return pid
        raise LookupError(marker)

    def log(self) -> str:
        return "\n".join(self.output)


def start_stack(
    config_path: Path, timeout: float = 90.0, extra_args: tuple[str, ...] = (), new_session: bool = False
) -> RunningStack:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tokenlabs", "dev", "--config", str(config_path), *extra_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO,
        start_new_session=new_session,
    )
    stack = RunningStack(process, yaml.safe_load(config_path.read_text()), config_path)
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            stack.output.append(line.rstrip())
            if line.startswith(READY_MARKER):
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.1):
        if process.poll() is not None or time.monotonic() > deadline:
            stack.stop()
            raise RuntimeError(f"tokenlabs dev did not become ready:\n{stack.log()}")
    return stack


def tenants_loaded(stack: RunningStack) -> float:
    for line in httpx.get(stack.metrics_url("authz")).text.splitlines():
        if line.startswith("tokenlabs_authz_tenants_loaded"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("tokenlabs_authz_tenants_loaded is not exported")


def add_tenant(stack: RunningStack, tier: str) -> tuple[str, str]:
    """A fresh tenant (fresh counters) applied as a Secret file; returns (tenant id, key) once the key is live."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    key = f"tlabs_sk_{uuid.uuid4().hex}"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"tenant-{name}",
            "namespace": "kuadrant-system",
            "labels": {"authorino.kuadrant.io/managed-by": "authorino"},
            "annotations": {"kuadrant.io/groups": tier, "secret.kuadrant.io/user-id": name},
        },
        "stringData": {"api_key": key},
    }
    before = tenants_loaded(stack)
    (Path(stack.config["tenants"]["directory"]) / f"tenant-{name}.yaml").write_text(yaml.safe_dump(secret))
    deadline = time.monotonic() + 1.0  # the directory source promises a change within 1 s
    while tenants_loaded(stack) <= before:
        assert time.monotonic() < deadline, "the new tenant was not live within 1 s"
        time.sleep(0.05)
    return name, key


def tenant_usage(stack: RunningStack, tenant: str) -> usage_pb2.TenantUsage:
    """The tenant's usage from extproc's ``tokenlabs.v1.UsageService``."""
    with grpc.insecure_channel(f"127.0.0.1:{stack.config['extproc']['grpc_port']}") as channel:
        stub = usage_pb2_grpc.UsageServiceStub(channel)  # type: ignore[no-untyped-call]
        reply = stub.GetTenantUsage(usage_pb2.GetTenantUsageRequest(tenant_id=tenant), timeout=5)
    usage: usage_pb2.TenantUsage = reply.usage
    return usage


def minute_tokens(usage: usage_pb2.TenantUsage) -> int:
    return next(int(window.tokens) for window in usage.windows if window.window == usage_pb2.WINDOW_MINUTE)
