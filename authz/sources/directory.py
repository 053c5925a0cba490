"""Tenants from Secret YAML files in a folder (the local and test source).

Every ``*.yaml``/``*.yml`` file may hold several documents; non-Secret documents are ignored. The folder is
polled (file names, sizes and mtimes) and re-read when anything changes, so a new, changed or deleted file takes
effect within one poll interval. A file that fails to parse keeps nobody's key alive: its Secrets are simply
absent from the new snapshot, and the failure is logged and reported as a rejection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import yaml

from authz.secrets import Rejection, Tenant, parse_secret
from authz.snapshot import TenantSnapshot, build_snapshot

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]
# libyaml's loader when PyYAML was built with it: 100,000 Secrets load in ~7 s instead of ~60 s with the pure-Python
# one, which stays the fallback (same documents, same YAMLError family).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def fingerprint(directory: Path) -> Fingerprint:
    entries = []
    for path in sorted(directory.glob("*.y*ml")):
        with contextlib.suppress(OSError):
            stat = path.stat()
            entries.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(entries)


def read_directory(directory: Path, known_tiers: frozenset[str]) -> TenantSnapshot:
    entries: list[Tenant | Rejection] = []
    for path in sorted(directory.glob("*.y*ml")):
        try:
            documents = list(yaml.load_all(path.read_text(encoding="utf-8"), Loader=_LOADER))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            entries.append(Rejection(f"file:{path.name}", f"unreadable ({type(exc).__name__})", code="unreadable_file"))
            continue
        for document in documents:
            parsed = parse_secret(document, known_tiers)
            if parsed is not None:
                entries.append(parsed)
    return build_snapshot(entries)


class DirectoryTenantSource:
    def __init__(
        self,
        directory: Path,
        known_tiers: frozenset[str],
        on_publish: Callable[[TenantSnapshot], None] = lambda _: None,
        poll_interval_s: float = 0.5,
    ) -> None:
        self._directory = directory
        self._known_tiers = known_tiers
        self._on_publish = on_publish
        self._poll_interval_s = poll_interval_s
        self._snapshot = TenantSnapshot()
        self._fingerprint: Fingerprint | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def current(self) -> TenantSnapshot:
        return self._snapshot

    async def start(self) -> None:
        if not self._directory.is_dir():
            raise FileNotFoundError(f"tenants directory {self._directory} does not exist")
        await self._refresh()
        self._task = asyncio.create_task(self._poll(), name="tenants-directory-poll")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval_s)
            try:
                await self._refresh()
            except Exception:
                log.exception("tenant directory refresh failed; keeping the previous snapshot")

    async def _refresh(self) -> None:
        current = await asyncio.to_thread(fingerprint, self._directory)
        if current == self._fingerprint:
            return
        snapshot = await asyncio.to_thread(read_directory, self._directory, self._known_tiers)
        self._fingerprint = current
        self._snapshot = snapshot
        self._on_publish(snapshot)
