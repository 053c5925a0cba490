"""A throwaway ``redis-server`` on a free loopback port, owned by the test that starts it.

No persistence (``--save ''``, ``--appendonly no``), so a kill and restart comes back empty, as a lost Redis pod
would. The server is a direct child (not daemonized): ``kill()`` is a real SIGKILL of the process that serves.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tokenlabs.devstack import free_ports

READY_TIMEOUT_S = 5.0


def redis_server_path() -> str | None:
    return shutil.which("redis-server")


class RedisServer:
    """``start()`` returns once the server answers; ``kill()``, then ``start()`` again, reuses the port.
    ``stop()`` is safe in any state and also ends a paused server."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port if port is not None else free_ports(1)[0]
        self._process: subprocess.Popen[bytes] | None = None
        # Its output (and its working directory, should it ever write a file), kept from start() until stop().
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        executable = redis_server_path()
        if executable is None:
            raise RuntimeError("redis-server is not installed")
        command = [executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self._workdir is None:
            self._workdir = tempfile.TemporaryDirectory(prefix="tokenlabs-redis-")
        log_path = Path(self._workdir.name) / "redis.log"
        with log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [*command, "--dir", self._workdir.name], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._answers(self._process.pid):
            if self._process.poll() is not None or time.monotonic() > deadline:
                output = log_path.read_text(errors="replace")[-4000:]
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{output}")
            time.sleep(0.01)

    def _answers(self, pid: int) -> bool:
        """Whether process ``pid`` answers on the port (not another server that holds it, ours failing to bind)."""
        expected = f"process_id:{pid}\r\n".encode()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"INFO server\r\n")
                reply = b""
                while b"process_id:" not in reply or not reply.endswith(b"\r\n"):
                    chunk = sock.recv(4096)
                    if not chunk:
                        return False
                    reply += chunk
                return expected in reply
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, as a crashed or evicted Redis: no shutdown, clients see their connections reset."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def pause(self) -> None:
        """SIGSTOP: connections are still accepted by the kernel but nothing answers, as a hung or partitioned
        Redis."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self._process is not None:
            self.resume()
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
