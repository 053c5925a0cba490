"""List and watch with the official client, without its model deserialization, plus retry pacing.

The generated client turns every object into model instances (about 2 ms per Secret here: minutes for 100k).
These helpers ask for the raw response (``_preload_content=False``) and parse JSON with orjson instead. Every
response being read is registered in a ``ResponseSlot`` so that another thread can interrupt a blocked read.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import orjson
import urllib3

Obj = dict[str, Any]
Event = dict[str, Any]

# Room for the server to end a watch at its ``timeoutSeconds`` before the client gives up on the read.
READ_GRACE_S = 15.0
CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class Selection:
    """What to follow: the objects ``list_call`` returns for ``namespace`` and ``label_selector`` (empty: all).
    ``list_call`` is one of CoreV1Api's ``list_namespaced_*`` methods, e.g. ``api.list_namespaced_pod``: the
    same call lists and, with ``watch=True``, watches."""

    list_call: Callable[..., object]
    namespace: str
    label_selector: str


class Gone(Exception):
    """The resourceVersion held is too old (HTTP 410 or an ERROR event with code 410): list again from scratch."""


class StreamDropped(Exception):
    """The watch stream broke before the server ended it."""


class WatchError(Exception):
    """An ERROR event other than 410 (a Status from the server)."""


class Interrupted(Exception):
    """The slot was closed: the owner is stopping."""


class ResponseSlot:
    """The response the worker thread is reading now; ``interrupt()`` from any thread unblocks that read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._response: urllib3.HTTPResponse | None = None
        self._interrupted = False

    @contextlib.contextmanager
    def hold(self, response: urllib3.HTTPResponse) -> Iterator[urllib3.HTTPResponse]:
        """Register ``response`` while it is read. Fully read: its connection goes back to the pool; otherwise the
        connection is closed, since a half-read stream can not be reused."""
        with self._lock:
            if self._interrupted:
                response.close()
                raise Interrupted
            self._response = response
        try:
            yield response
        except BaseException:
            response.close()
            raise
        else:
            response.release_conn()
        finally:
            with self._lock:
                self._response = None

    def interrupt(self) -> None:
        """Shut the socket of the response being read (the blocked ``recv`` returns at once) and refuse new ones."""
        with self._lock:
            self._interrupted = True
            response = self._response
        if response is not None:
            # shutdown() raises when the connection is already back in the pool or gone: nothing is blocked then.
            with contextlib.suppress(Exception):
                response.shutdown()


class Backoff:
    """Exponential delays from ``initial_s`` doubling up to ``max_s``, each scaled by a random factor in [0.5, 1]
    so that replicas do not retry in lockstep; ``reset()`` after a success."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self._initial_s = initial_s
        self._max_s = max_s
        self._attempt = 0

    def next(self) -> float:
        delay = min(self._max_s, self._initial_s * 2.0**self._attempt)
        self._attempt = min(self._attempt + 1, 32)
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self._attempt = 0


def resource_version(obj: Any) -> str | None:
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    version = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return version if isinstance(version, str) and version else None


def raise_for_error_event(status: Any) -> None:
    """Turn the Status carried by an ERROR event into ``Gone`` (code 410) or ``WatchError``."""
    code = status.get("code") if isinstance(status, Mapping) else None
    reason = status.get("reason") if isinstance(status, Mapping) else None
    if code == 410:
        raise Gone(f"watch expired ({reason})")
    raise WatchError(f"watch ERROR event: code {code}, reason {reason}")


def list_objects(selection: Selection, page_size: int, timeout_s: float, slot: ResponseSlot) -> tuple[list[Obj], str]:
    """All selected objects (paginated with ``limit``/``continue``) and the list's resourceVersion. List items
    carry no ``kind`` on a real API server; callers must not rely on it."""
    items: list[Obj] = []
    token: str | None = None
    while True:
        response = selection.list_call(
            selection.namespace,
            label_selector=selection.label_selector or None,
            limit=page_size,
            _continue=token,
            _preload_content=False,
            _request_timeout=timeout_s,
        )
        with slot.hold(cast(urllib3.HTTPResponse, response)) as held:
            page = orjson.loads(held.read())
        items.extend(page.get("items") or ())
        meta = page.get("metadata") or {}
        token = meta.get("continue") or None
        if token is None:
            version = resource_version(page)
            if version is None:
                raise ValueError("list response carries no resourceVersion")
            return items, version


def watch_batches(
    selection: Selection, since: str, timeout_s: int, connect_timeout_s: float, slot: ResponseSlot
) -> Generator[list[Event], None, None]:
    """Watch from resourceVersion ``since`` with bookmarks, yielding the events of each received chunk together
    (a burst arrives as one batch). Returns when the server ends the stream; ``StreamDropped`` when it breaks."""
    response = selection.list_call(
        selection.namespace,
        label_selector=selection.label_selector or None,
        watch=True,
        allow_watch_bookmarks=True,
        resource_version=since,
        timeout_seconds=timeout_s,
        _preload_content=False,
        _request_timeout=(connect_timeout_s, timeout_s + READ_GRACE_S),
    )
    with slot.hold(cast(urllib3.HTTPResponse, response)) as held:
        pending = b""
        chunks = held.stream(CHUNK_BYTES)
        while True:
            try:
                chunk = next(chunks, None)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise StreamDropped(type(exc).__name__) from exc
            if chunk is None:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            events = [orjson.loads(line) for line in lines if line.strip()]
            if events:
                yield events
        if pending.strip():
            raise StreamDropped("stream ended inside an event")
