"""``DirectoryStore``: tenant Secrets as YAML files in a folder, the store behind the local directory source.

Each Secret it manages is the only document in ``DIR/tenant-NAME.yaml``, with the key in ``stringData.api_key``.
Writes go to a hidden temporary file in the same folder (mode 0600) that is then renamed over the target (or
hard-linked, for ``create``, so that an existing file is never overwritten): authz's poller sees the old file or the
new one, never half of one. ``list_tenants`` reads every ``*.yaml``/``*.yml`` file, as authz does; a Secret without a
``creationTimestamp`` (written by hand) is shown with its file's modification time.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from authz.admin import AlreadyExists, NotFound, StoreError, TenantRecord, records, timestamp, unreadable
from authz.secrets import KEY_FIELD, TIER_ANNOTATION
from tokenlabs.errors import ConfigError


class DirectoryStore:
    def __init__(self, directory: Path, namespace: str) -> None:
        """``ConfigError`` when ``directory`` is not an existing folder: a mistyped path must not start a new one."""
        if not directory.is_dir():
            raise ConfigError("tenants.directory", str(directory), "is not an existing directory")
        self._directory = directory
        self._namespace = namespace

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def location(self) -> str:
        return f"directory {self._directory}"

    def get(self, secret: str) -> dict[str, Any]:
        path = self._path(secret)
        try:
            documents = self._load(path)
        except FileNotFoundError:
            elsewhere = self._file_defining(secret)
            if elsewhere is not None:
                raise StoreError(
                    f"{secret} is defined in {elsewhere}, not in {path.name}; edit that file by hand"
                ) from None
            raise NotFound(f"{secret} not found in {self.location}") from None
        document = documents[0] if len(documents) == 1 and isinstance(documents[0], dict) else {}
        meta = document.get("metadata")
        if document.get("kind") != "Secret" or not isinstance(meta, Mapping) or meta.get("name") != secret:
            raise StoreError(f"{path} does not hold just the Secret {secret}; edit it by hand")
        return document

    def list_tenants(self, known_tiers: frozenset[str]) -> list[TenantRecord]:
        found: list[tuple[Mapping[str, Any], datetime | None]] = []
        broken: list[TenantRecord] = []
        for path in sorted(self._directory.glob("*.y*ml")):
            try:
                documents = self._load(path)
                modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            except FileNotFoundError:
                continue  # deleted since the glob
            except (StoreError, OSError) as exc:
                broken.append(unreadable(f"file:{path.name}", f"unreadable ({exc})"))
                continue
            for document in documents:
                if isinstance(document, Mapping):
                    meta = document.get("metadata")
                    created = timestamp(meta.get("creationTimestamp")) if isinstance(meta, Mapping) else None
                    found.append((document, created or modified))
        return records(found, known_tiers) + broken

    def create(self, document: Mapping[str, Any]) -> None:
        secret = str(document["metadata"]["name"])
        path = self._path(secret)
        elsewhere = self._file_defining(secret)
        if elsewhere is not None:
            raise AlreadyExists(f"{secret} already exists in {self.location} ({elsewhere})")
        stored = dict(document)
        # A file has no API server to stamp the creation time; ``list_tenants`` shows it.
        stored["metadata"] = {**document["metadata"], "creationTimestamp": _now()}
        try:
            self._write(path, stored, overwrite=False)
        except FileExistsError:
            raise AlreadyExists(f"{secret} already exists in {self.location} ({path.name})") from None

    def set_key(self, secret: str, key: str) -> None:
        document = self.get(secret)
        document["stringData"] = {**(document.get("stringData") or {}), KEY_FIELD: key}
        data = {k: v for k, v in (document.pop("data", None) or {}).items() if k != KEY_FIELD}
        if data:
            document["data"] = data
        self._write(self._path(secret), document, overwrite=True)

    def set_tier(self, secret: str, tier: str) -> None:
        document = self.get(secret)
        metadata = document.setdefault("metadata", {})
        metadata["annotations"] = {**(metadata.get("annotations") or {}), TIER_ANNOTATION: tier}
        self._write(self._path(secret), document, overwrite=True)

    def delete(self, secret: str) -> None:
        self.get(secret)
        try:
            self._path(secret).unlink()
        except FileNotFoundError:
            raise NotFound(f"{secret} not found in {self.location}") from None
        except OSError as exc:
            raise StoreError(f"cannot delete {self._path(secret)}: {exc.strerror}") from None

    def _path(self, secret: str) -> Path:
        return self._directory / f"{secret}.yaml"

    def _file_defining(self, secret: str) -> str | None:
        """The name of the file holding a Secret named ``secret``, if any; broken files are skipped."""
        for path in sorted(self._directory.glob("*.y*ml")):
            with contextlib.suppress(StoreError, FileNotFoundError):
                for document in self._load(path):
                    if not isinstance(document, Mapping) or document.get("kind") != "Secret":
                        continue
                    meta = document.get("metadata")
                    if isinstance(meta, Mapping) and meta.get("name") == secret:
                        return path.name
        return None

    @staticmethod
    def _load(path: Path) -> list[Any]:
        """The file's documents; ``FileNotFoundError`` passes through, other failures become ``StoreError``."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise StoreError(f"cannot read {path}: not UTF-8") from None
        try:
            return [document for document in yaml.safe_load_all(text) if document is not None]
        except yaml.YAMLError as exc:
            raise StoreError(f"{path} is not valid YAML ({type(exc).__name__})") from None

    def _write(self, path: Path, document: Mapping[str, Any], *, overwrite: bool) -> None:
        text = yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True)
        # mkstemp makes the file 0600; the leading dot and the .tmp suffix keep it out of authz's *.yaml poll.
        fd, temporary = tempfile.mkstemp(dir=self._directory, prefix=f".{path.stem}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            if overwrite:
                os.replace(temporary, path)
            else:
                os.link(temporary, path)
        except FileExistsError:
            raise
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
