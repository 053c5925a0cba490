"""Tenants from Kubernetes Secrets: list, then watch from the list's resourceVersion (the reflector pattern).

Contract (``TenantSource``): ``start()`` returns once the first complete list is published, retrying with backoff
while the API is unreachable (until ``stop()``, which then makes ``start()`` raise ``RuntimeError``). Later changes
are published as new immutable snapshots; ``stop()`` returns within about two seconds, even mid-read.

The official client is synchronous, so two daemon threads do the work:

- ``tenants-kube-watch`` lists (paginated), then watches. ADDED/MODIFIED/DELETED update a map of namespace/name →
  ``parse_secret`` result; BOOKMARK only advances the resourceVersion. A watch that ends or breaks resumes from the
  last resourceVersion; 410 Gone (HTTP or ERROR event) re-lists and replaces the whole map, so Secrets deleted
  meanwhile disappear. Failures back off exponentially with jitter; the backoff resets after a success.
- ``tenants-kube-publish`` rebuilds the snapshot (O(tenants)) once per burst: it waits ``coalesce_s`` after the
  first change, then builds from everything changed so far.

Snapshots reach the event loop through ``call_soon_threadsafe``, so ``current`` only changes on the loop thread, and
so do the metric counters (they are not thread-safe). Logs carry Secret names and reasons, never keys or data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException

from authz.secrets import Rejection, Tenant, parse_secret, secret_name
from authz.snapshot import TenantSnapshot, build_snapshot
from authz.sources.kube_watch import (
    Backoff,
    Event,
    Gone,
    Interrupted,
    ResponseSlot,
    StreamDropped,
    list_secrets,
    raise_for_error_event,
    resource_version,
    watch_batches,
)
from tokenlabs.telemetry import Telemetry

log = logging.getLogger(__name__)

Entry = Tenant | Rejection


def parse_object(obj: dict[str, Any], known_tiers: frozenset[str]) -> Entry | None:
    # List items come without ``kind`` from a real API server; everything listed here is a Secret.
    obj.setdefault("kind", "Secret")
    return parse_secret(obj, known_tiers)


def join_all(threads: list[threading.Thread], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


class KubernetesTenantSource:
    """Secrets in ``namespace`` matching ``label_selector``. ``page_size``: Secrets per list request.
    ``watch_timeout_s``: the server ends each watch after this long (it is then resumed). ``request_timeout_s``:
    limit for one list page and for connecting a watch. Backoff: ``backoff_initial_s`` doubling up to
    ``backoff_max_s``. ``coalesce_s``: how long a burst of changes may gather before one rebuild."""

    def __init__(
        self,
        api: CoreV1Api,
        namespace: str,
        label_selector: str,
        known_tiers: frozenset[str],
        telemetry: Telemetry,
        on_publish: Callable[[TenantSnapshot], None] = lambda _: None,
        *,
        page_size: int = 500,
        watch_timeout_s: int = 300,
        request_timeout_s: float = 30.0,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 10.0,
        coalesce_s: float = 0.05,
    ) -> None:
        self._api = api
        self._namespace = namespace
        self._label_selector = label_selector
        self._known_tiers = known_tiers
        self._on_publish = on_publish
        self._page_size = page_size
        self._watch_timeout_s = watch_timeout_s
        self._request_timeout_s = request_timeout_s
        self._backoff = Backoff(backoff_initial_s, backoff_max_s)
        self._coalesce_s = coalesce_s
        self._restarts = telemetry.counter(
            "tokenlabs_authz_watch_restarts", "Tenant Secret list/watch restarts, by reason.", ("reason",)
        )
        self._events = telemetry.counter("tokenlabs_authz_watch_events", "Tenant Secret watch events.", ("type",))
        self._snapshot = TenantSnapshot()
        # Shared between the two threads, guarded by _changed's lock.
        self._changed = threading.Condition()
        self._entries: dict[str, Entry] = {}
        self._dirty = False
        # Owned by the watch thread.
        self._resource_version: str | None = None
        self._stopping = threading.Event()
        self._slot = ResponseSlot()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._first: asyncio.Future[None] | None = None

    @property
    def current(self) -> TenantSnapshot:
        return self._snapshot

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._first = self._loop.create_future()
        self._threads = [
            threading.Thread(target=self._watch_forever, name="tenants-kube-watch", daemon=True),
            threading.Thread(target=self._publish_forever, name="tenants-kube-publish", daemon=True),
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
            self._first.set_exception(RuntimeError("tenant source stopped before the first list completed"))
        threads, self._threads = self._threads, []
        # A thread still blocked in a connect after this is a daemon: it notices _stopping and exits quietly.
        await asyncio.to_thread(join_all, threads, timeout_s)

    # --- event loop side -------------------------------------------------------------------------------------

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        if self._loop is None or self._stopping.is_set():
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left to tell
            self._loop.call_soon_threadsafe(callback, *args)

    def _swap(self, snapshot: TenantSnapshot) -> None:
        if self._stopping.is_set():
            return
        self._snapshot = snapshot
        self._on_publish(snapshot)
        if self._first is not None and not self._first.done():
            self._first.set_result(None)

    def _count_restart(self, reason: str) -> None:
        self._restarts.add((reason,))

    def _count_events(self, counts: Counter[str]) -> None:
        for kind, count in counts.items():
            self._events.add((kind,), count)

    # --- publish thread --------------------------------------------------------------------------------------

    def _publish_forever(self) -> None:
        while True:
            with self._changed:
                while not self._dirty and not self._stopping.is_set():
                    self._changed.wait()
            # Let the rest of a burst land before paying for an O(tenants) rebuild.
            if self._stopping.wait(self._coalesce_s):
                return
            with self._changed:
                entries = list(self._entries.values())
                self._dirty = False
            self._post(self._swap, build_snapshot(entries))

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
            log.log(
                logging.INFO if reason == "ended" else logging.WARNING,
                "tenant secret watch restarting",
                extra={"reason": reason, "detail": detail, "relist": self._resource_version is None, "delay_s": delay},
            )
            self._post(self._count_restart, reason)
            self._stopping.wait(delay)

    def _relist(self) -> None:
        started = time.monotonic()
        items, version = list_secrets(
            self._api, self._namespace, self._label_selector, self._page_size, self._request_timeout_s, self._slot
        )
        entries: dict[str, Entry] = {}
        for obj in items:
            entry = parse_object(obj, self._known_tiers)
            if entry is not None:
                entries[secret_name(obj)] = entry
        with self._changed:
            self._entries = entries
            self._dirty = True
            self._changed.notify()
        self._resource_version = version
        self._backoff.reset()
        log.info(
            "tenant secrets listed",
            extra={
                "secrets": len(items),
                "seconds": round(time.monotonic() - started, 3),
                "namespace": self._namespace,
            },
        )

    def _watch(self) -> None:
        assert self._resource_version is not None
        batches = watch_batches(
            self._api,
            self._namespace,
            self._label_selector,
            self._resource_version,
            self._watch_timeout_s,
            self._request_timeout_s,
            self._slot,
        )
        with contextlib.closing(batches):
            for events in batches:
                self._apply(events)
                self._backoff.reset()

    def _apply(self, events: list[Event]) -> None:
        changes: dict[str, Entry | None] = {}
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
                    changes[secret_name(obj)] = None
                elif kind in ("ADDED", "MODIFIED"):
                    changes[secret_name(obj)] = parse_object(obj, self._known_tiers)
        finally:
            # Events before an ERROR still happened: keep them and count them.
            self._post(self._count_events, counts)
            if changes:
                with self._changed:
                    for key, entry in changes.items():
                        if entry is None:
                            self._entries.pop(key, None)
                        else:
                            self._entries[key] = entry
                    self._dirty = True
                    self._changed.notify()
