"""`tokenlabs dev` as a supervisor: clean stop with no orphans, and a loud stop when a part fails."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from tests.integration.stack import REPO, alive, children_of, stack_config, start_stack
from tokenlabs.devstack import free_ports


def test_sigterm_stops_every_child(tmp_path: Path) -> None:
    port, admin_port = free_ports(2)
    stack = start_stack(stack_config(tmp_path), extra_args=("--port", str(port), "--admin-port", str(admin_port)))
    assert httpx.get(f"http://127.0.0.1:{admin_port}/ready").status_code == 200
    models = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"x-api-key": "tlabs_free_demo_key_change_me"})
    assert models.status_code == 200
    children = children_of(stack.process.pid)
    assert len(children) == 5, stack.log()  # authz, extproc, epp, workers, envoy
    assert stack.stop() == 0
    assert not [pid for pid in children if alive(pid)]
    assert "tokenlabs dev: stopping" in stack.log()


def test_ctrl_c_in_a_terminal_stops_every_child(tmp_path: Path) -> None:
    # A terminal sends SIGINT to the whole foreground process group, not just to `tokenlabs dev`.
    stack = start_stack(stack_config(tmp_path), new_session=True)
    children = children_of(stack.process.pid)
    os.killpg(stack.process.pid, signal.SIGINT)
    assert stack.process.wait(30) == 0, stack.log()
    assert not [pid for pid in children if alive(pid)]
    assert "exited with code" not in stack.log()


def test_a_failing_part_stops_the_stack_and_shows_its_output(tmp_path: Path) -> None:
    config = stack_config(tmp_path)
    text = config.read_text()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        # The gateway port is taken: Envoy cannot bind and exits.
        document = yaml.safe_load(text)
        document["gateway"]["port"] = port
        config.write_text(yaml.safe_dump(document))
        result = subprocess.run(
            [sys.executable, "-m", "tokenlabs", "dev", "--config", str(config), "--startup-timeout", "30"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
    assert result.returncode == 1
    assert "envoy exited with code" in result.stderr
    assert "its last output" in result.stderr


def test_bad_port_option_is_refused_before_anything_starts() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tokenlabs", "dev", "--port", "99999"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2 and "'99999' is not a TCP port" in result.stderr


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("tiers: {free: {requests_per_minute: -5}}\nmodels: {}\npools: {}\n")
    result = subprocess.run(
        [sys.executable, "-m", "tokenlabs", "dev", "--config", str(config)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "tiers.free.requests_per_minute" in result.stderr and "-5" in result.stderr
