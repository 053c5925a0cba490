"""Follow a set of Kubernetes objects: list, then watch from the list's resourceVersion (the reflector pattern).

Contract: ``start()`` returns once the first complete list is published, retrying with backoff while the API is
unreachable (until ``stop()``, which then makes ``start()`` raise ``RuntimeError``). Later changes are published as
new snapshots; ``stop()`` returns within about two seconds, even mid-read.

The official client is synchronous, so two daemon threads do the work:

- ``<prefix>-watch`` lists (paginated), then watches. ADDED/MODIFIED/DELETED update a map of namespace/name →
  ``parse(object)`` (``None``: the object is left out); BOOKMARK only advances the resourceVersion. A watch that
  ends or breaks resumes from the last resourceVersion; 410 Gone (HTTP or ERROR event) re-lists and replaces the
  whole map, so objects deleted meanwhile disappear. Failures back off exponentially with jitter; the backoff
  resets after a success.
- ``<prefix>-publish`` runs ``build`` once per burst: it waits ``coalesce_s`` after the first change, then builds
  from every entry held at that moment.

Snapshots and counts reach the event loop through ``call_soon_threadsafe``: ``publish``, ``on_restart`` and
``on_events`` run only on the loop thread, so they may touch loop-owned state (the metric counters are not
thread-safe).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from kubernetes.client.exceptions import ApiException

from tokenlabs.kube.watch import (
    Backoff,
    Event,
    Gone,
    Interrupted,
    Obj,
    ResponseSlot,
    Selection,
    StreamDropped,
    list_objects,
    raise_for_error_event,
    resource_version,
    watch_batches,
)

EntryT = TypeVar("EntryT")
SnapshotT = TypeVar("SnapshotT")


@dataclass(frozen=True)
class WatchOptions:
    """``page_size``: objects per list request. ``watch_timeout_s``: the server ends each watch after this long (it
    is then resumed). ``request_timeout_s``: limit for one list page and for connecting a watch. Backoff:
    ``backoff_initial_s`` doubling up to ``backoff_max_s``. ``coalesce_s``: how long a burst of changes may gather
    before one rebuild."""

    page_size: int = 500
    watch_timeout_s: int = 300
    request_timeout_s: float = 30.0
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    coalesce_s: float = 0.05


DEFAULT_OPTIONS = WatchOptions()


def object_key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name') or '<unnamed>'}"


def join_all(threads: list[threading.Thread], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


class Reflector(Generic[EntryT, SnapshotT]):
    """The objects of ``selection``, each kept as ``parse(object)``, published as ``build(entries)`` through
    ``publish``. ``subject`` names the objects in logs ("tenant secret"), ``thread_prefix`` the threads; ``log`` is
    the owner's logger and ``log_extra`` goes into every record. ``on_restart(reason)`` counts each restart
    (``ended``, ``dropped``, ``gone``, ``error``), ``on_events`` the watch events by type."""

    def __init__(
        self,
        selection: Selection,
        parse: Callable[[Obj], EntryT | None],
        build: Callable[[list[EntryT]], SnapshotT],
        publish: Callable[[SnapshotT], None],
        *,
        subject: str,
        thread_prefix: str,
        log: logging.Logger,
        log_extra: Mapping[str, object],
        on_restart: Callable[[str], None],
        on_events: Callable[[Counter[str]], None] = lambda _: None,
        options: WatchOptions = DEFAULT_OPTIONS,
    ) -> None:
        self._selection = selection
        self._parse = parse
        self._build = build
        self._publish = publish
        self._subject = subject
        self._thread_prefix = thread_prefix
        self._log = log
        self._log_extra = dict(log_extra)
        self._on_restart = on_restart
        self._on_events = on_events
        self._options = options
        self._backoff = Backoff(options.backoff_initial_s, options.backoff_max_s)
        # Shared between the two threads, guarded by _changed's lock.
        self._changed = threading.Condition()
        self._entries: dict[str, EntryT] = {}
        self._dirty = False
        # Owned by the watch thread.
        self._resource_version: str | None = None
        self._stopping = threading.Event()
        self._slot = ResponseSlot()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._first: asyncio.Future[None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._first = self._loop.create_future()
        prefix = self._thread_prefix
        self._threads = [
            threading.Thread(target=self._watch_forever, name=f"{prefix}-watch", daemon=True),
            threading.Thread(target=self._publish_forever, name=f"{prefix}-publish", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        try:
            await self._first
        except asyncio.CancelledError:
            await self.stop()
            raise

    async def stop(self, timeout_s: float = 2.0) -> None:
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        self._slot.interrupt()
        if self._first is not None and not self._first.done():
            self._first.set_exception(RuntimeError(f"{self._subject} source stopped before the first list completed"))
        threads, self._threads = self._threads, []
        # A thread still blocked in a connect after this is a daemon: it notices _stopping and exits quietly.
        await asyncio.to_thread(join_all, threads, timeout_s)

    # --- event loop side -------------------------------------------------------------------------------------

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        if self._loop is None or self._stopping.is_set():
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left to tell
            self._loop.call_soon_threadsafe(callback, *args)

    def _swap(self, snapshot: SnapshotT) -> None:
        if self._stopping.is_set():
            return
        self._publish(snapshot)
        if self._first is not None and not self._first.done():
            self._first.set_result(None)

    # --- publish thread --------------------------------------------------------------------------------------

    def _publish_forever(self) -> None:
        while True:
            with self._changed:
                while not self._dirty and not self._stopping.is_set():
                    self._changed.wait()
            # Let the rest of a burst land before paying for a rebuild.
            if self._stopping.wait(self._options.coalesce_s):
                return
            with self._changed:
                entries = list(self._entries.values())
                self._dirty = False
            self._post(self._swap, self._build(entries))

    # --- watch thread ----------------------------------------------------------------------------------------

    def _watch_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                if self._resource_version is None:
                    self._relist()
                self._watch()
                # Routine (every watch_timeout_s): resume after the short initial delay only.
                reason, detail = "ended", "server ended the watch"
                self._backoff.reset()
            except Interrupted:
                return
            except Gone as exc:
                reason, detail = "gone", str(exc)
            except ApiException as exc:
                reason, detail = ("gone" if exc.status == 410 else "error"), f"HTTP {exc.status} {exc.reason}"
            except StreamDropped as exc:
                reason, detail = "dropped", str(exc)
            except Exception as exc:
                reason, detail = "error", f"{type(exc).__name__}: {exc}"[:300]
            if self._stopping.is_set():
                return
            if reason == "gone":
                self._resource_version = None
            delay = self._backoff.next()
            self._log.log(
                logging.INFO if reason == "ended" else logging.WARNING,
                f"{self._subject} watch restarting",
                extra={
                    **self._log_extra,
                    "reason": reason,
                    "detail": detail,
                    "relist": self._resource_version is None,
                    "delay_s": delay,
                },
            )
            self._post(self._on_restart, reason)
            self._stopping.wait(delay)

    def _relist(self) -> None:
        started = time.monotonic()
        options = self._options
        items, version = list_objects(self._selection, options.page_size, options.request_timeout_s, self._slot)
        entries: dict[str, EntryT] = {}
        for obj in items:
            entry = self._parse(obj)
            if entry is not None:
                entries[object_key(obj)] = entry
        with self._changed:
            self._entries = entries
            self._dirty = True
            self._changed.notify()
        self._resource_version = version
        self._backoff.reset()
        self._log.info(
            f"{self._subject}s listed",
            extra={**self._log_extra, "objects": len(items), "seconds": round(time.monotonic() - started, 3)},
        )

    def _watch(self) -> None:
        assert self._resource_version is not None
        options = self._options
        batches = watch_batches(
            self._selection, self._resource_version, options.watch_timeout_s, options.request_timeout_s, self._slot
        )
        with contextlib.closing(batches):
            for events in batches:
                self._apply(events)
                self._backoff.reset()

    def _apply(self, events: list[Event]) -> None:
        changes: dict[str, EntryT | None] = {}
        counts: Counter[str] = Counter()
        try:
            for event in events:
                kind, obj = str(event.get("type")), event.get("object")
                counts[kind] += 1
                if kind == "ERROR":
                    raise_for_error_event(obj)
                if not isinstance(obj, dict):
                    continue
                self._resource_version = resource_version(obj) or self._resource_version
                if kind == "DELETED":
                    changes[object_key(obj)] = None
                elif kind in ("ADDED", "MODIFIED"):
                    changes[object_key(obj)] = self._parse(obj)
        finally:
            # Events before an ERROR still happened: keep them and count them.
            self._post(self._on_events, counts)
            if changes:
                with self._changed:
                    for key, entry in changes.items():
                        if entry is None:
                            self._entries.pop(key, None)
                        else:
                            self._entries[key] = entry
                    self._dirty = True
                    self._changed.notify()
