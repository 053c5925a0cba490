"""Core objects (Secrets, Pods) served the way kube-apiserver serves them, for ``tests.kube_api``; used only on
that server's loop.

One global resourceVersion stamps every write of every kind, and one history of changes serves every watch, as
etcd does. Writes: create / get / replace (a stated resourceVersion must be current) / patch (JSON merge, strategic
merge, JSON patch) / delete; a Secret's ``stringData`` is folded into base64 ``data``. A Pod is stored as written,
``status`` included: tests play the kubelet. Lists honour ``labelSelector`` and ``limit``/``continue`` (pages of
one consistent snapshot; an unknown token is 410) and, like a real server, leave ``kind``/``apiVersion`` off the
items. Watches start from ``resourceVersion`` (``""`` or ``"0"`` replays the current objects first), apply the
selector to transitions (an object leaving the selector is DELETED for that watch), send BOOKMARKs every
``bookmark_interval_s`` of quiet when allowed, end after ``timeoutSeconds``, and answer a resourceVersion older
than the retained history with an ERROR event, code 410.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import copy
import datetime
import re
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonpatch
import kmock

Obj = dict[str, Any]
REASONS = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed", 409: "Conflict", 410: "Expired"}
Requirement = tuple[str, str, frozenset[str]]  # key, operator (in / notin / exists / absent), values


def parse_selector(selector: str) -> list[Requirement]:
    """Label selector syntax: ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, ``k in (a,b)``, ``k notin (a,b)``, joined
    by commas; ``ValueError`` otherwise."""
    requirements: list[Requirement] = []
    for term in filter(None, (t.strip() for t in re.split(r",(?![^(]*\))", selector))):
        if match := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", term):
            requirements.append((match[1], match[2], frozenset(v.strip() for v in match[3].split(","))))
        elif match := re.fullmatch(r"([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)", term):
            requirements.append((match[1], "notin" if match[2] == "!=" else "in", frozenset({match[3]})))
        elif match := re.fullmatch(r"(!?)([\w./-]+)", term):
            requirements.append((match[2], "absent" if match[1] else "exists", frozenset()))
        else:
            raise ValueError(f"unable to parse requirement: {term!r}")
    return requirements


def selects(requirements: list[Requirement], obj: Mapping[str, Any]) -> bool:
    labels: Mapping[str, str] = obj.get("metadata", {}).get("labels") or {}
    for key, operator, values in requirements:
        value = labels.get(key)
        held = {
            "in": value in values,
            "notin": value not in values,
            "exists": key in labels,
            "absent": key not in labels,
        }
        if not held[operator]:
            return False
    return True


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (for Secrets, strategic merge patch behaves the same)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def status(code: int, message: str, **details: str) -> Obj:
    """A Status body, as in error responses and ERROR watch events."""
    outcome = "Success" if code < 400 else "Failure"
    reason = REASONS.get(code, "InternalError" if code >= 400 else "")
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": outcome, "message": message}
    return body | {"reason": reason, "details": details, "code": code}


def failure(code: int, message: str, **details: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(
        status=code, reason=REASONS.get(code, "InternalError"), message=message, details=details
    )


@dataclass(frozen=True)
class Kind:
    """A resource served: its URL ``plural``, its ``kind``, and how a write is completed before it is stored."""

    plural: str
    kind: str
    complete: Callable[[Obj], None] = lambda _: None


def complete_secret(secret: Obj) -> None:
    data = dict(secret.get("data") or {})
    data.update(
        {k: base64.b64encode(str(v).encode()).decode() for k, v in (secret.pop("stringData", None) or {}).items()}
    )
    try:
        for value in data.values():
            base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise failure(400, "Secret data values must be base64") from None
    secret["type"] = secret.get("type") or "Opaque"
    if data:
        secret["data"] = data


KINDS = {kind.plural: kind for kind in (Kind("secrets", "Secret", complete_secret), Kind("pods", "Pod"))}
PLURALS = {kind.kind: plural for plural, kind in KINDS.items()}
Key = tuple[str, str, str]  # plural, namespace, name


@dataclass(frozen=True)
class Change:
    version: int
    type: str  # ADDED, MODIFIED or DELETED
    plural: str
    old: Obj | None
    obj: Obj  # the new state; for DELETED, the last state stamped with the deletion's resourceVersion

    def seen_by(self, plural: str, namespace: str | None, requirements: list[Requirement]) -> Obj | None:
        """The event a watch on ``plural`` in ``namespace`` with ``requirements`` receives for this change, if any."""
        if plural != self.plural or namespace not in (None, self.obj["metadata"]["namespace"]):
            return None
        was = self.old is not None and selects(requirements, self.old)
        now = self.type != "DELETED" and selects(requirements, self.obj)
        kind = "MODIFIED" if was and now else "ADDED" if now else "DELETED" if was else None
        return {"type": kind, "object": self.obj} if kind else None


@dataclass
class OpenWatch:
    request: kmock.Request
    dropped: bool = False

    def abort(self) -> None:
        # kmock exposes no public handle on the connection; aborting it is what a broken stream looks like.
        raw = self.request._raw_request
        if raw is not None and raw.transport is not None:
            raw.transport.abort()

    @property
    def alive(self) -> bool:
        raw = self.request._raw_request
        return raw is not None and raw.transport is not None and not raw.transport.is_closing()


class ObjectStore:
    """Objects of every kind in ``KINDS`` with kube-apiserver's list/watch semantics. Used only on the server's
    event loop. ``faults`` and ``served`` are by verb, whatever the resource."""

    def __init__(self, bookmark_interval_s: float) -> None:
        self.bookmark_interval_s = bookmark_interval_s
        self.objects: dict[Key, Obj] = {}
        self.history: list[Change] = []
        self.version = 1000
        self.oldest = self.version  # a watch may resume from any resourceVersion at or after this one
        self.pages: dict[str, tuple[int, list[Obj], int]] = {}
        self.faults: dict[str, list[int]] = {}
        self.served: list[tuple[str, str, dict[str, str]]] = []  # resource, verb, query parameters
        self.watches: list[OpenWatch] = []
        self.wakeup = asyncio.Event()

    def stored(self, plural: str, namespace: str) -> list[Obj]:
        return [copy.deepcopy(o) for (p, n, _), o in sorted(self.objects.items()) if (p, n) == (plural, namespace)]

    def write(self, plural: str, obj: Mapping[str, Any], namespace: str, *, create: bool | None = None) -> Obj:
        """Create (``create=True``), replace (``False``; a stated resourceVersion must be current) or either;
        returns a copy of the stored object."""
        new = copy.deepcopy(dict(obj))
        meta = new.setdefault("metadata", {})
        name = meta.get("name")
        if not name:
            raise failure(400, "metadata.name is required")
        old = self.objects.get((plural, namespace, name))
        if create and old is not None:
            raise failure(409, f'{plural} "{name}" already exists', name=name, kind=plural)
        if create is False and old is None:
            raise failure(404, f'{plural} "{name}" not found', name=name, kind=plural)
        stated = meta.get("resourceVersion")
        if create is False and old is not None and stated and stated != old["metadata"]["resourceVersion"]:
            raise failure(409, "the object has been modified; please apply your changes to the latest version")
        KINDS[plural].complete(new)
        new.update(apiVersion="v1", kind=KINDS[plural].kind)
        created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        kept = old["metadata"] if old is not None else {"uid": str(uuid.uuid4()), "creationTimestamp": created}
        meta.update(namespace=namespace, uid=kept["uid"], creationTimestamp=kept["creationTimestamp"])
        self._record("ADDED" if old is None else "MODIFIED", plural, old, new)
        self.objects[(plural, namespace, name)] = new
        return copy.deepcopy(new)

    def delete(self, plural: str, namespace: str, name: str) -> Obj:
        old = self.objects.pop((plural, namespace, name), None)
        if old is None:
            raise failure(404, f'{plural} "{name}" not found', name=name, kind=plural)
        self._record("DELETED", plural, old, copy.deepcopy(old))
        return old

    def _record(self, kind: str, plural: str, old: Obj | None, new: Obj) -> None:
        self.version += 1
        new["metadata"]["resourceVersion"] = str(self.version)
        self.history.append(Change(self.version, kind, plural, old, new))
        self.wake()

    def wake(self) -> None:
        self.wakeup.set()
        self.wakeup = asyncio.Event()

    def drop_watches(self) -> int:
        for watch in self.watches:
            watch.dropped = True
        self.wake()
        return len(self.watches)

    def expire_history(self) -> None:
        self.history.clear()
        self.oldest = self.version
        self.wake()

    def serve(self, request: kmock.Request) -> kmock.Payload:
        """kmock's reaction to every request on a resource of ``KINDS``."""
        params, namespace, name = dict(request.params), request.namespace, request.name
        plural = request.resource.plural if request.resource is not None else None
        if plural not in KINDS or request.subresource:
            raise failure(404, f"the server could not find the requested resource ({request.url.path})")
        verbs = {"POST": "create", "PUT": "replace", "PATCH": "patch", "DELETE": "delete"}
        verb = verbs.get(request.method.value) or ("watch" if params.get("watch") in ("true", "1") else "list")
        verb = "get" if verb == "list" and name else verb
        self.served.append((plural, verb, params))
        if self.faults.get(verb):
            raise failure(self.faults[verb].pop(0), f"injected fault on {verb}")
        try:
            if verb == "list":
                return self._list(plural, namespace, params)
            if verb == "watch":
                return self._watch(request, plural, namespace, params)
        except ValueError as exc:
            raise failure(400, str(exc)) from None
        if namespace is None or (name is None) != (verb == "create"):
            raise failure(405, f"{verb} needs a namespaced {KINDS[plural].kind} path")
        body: Any = request.data
        if verb in ("create", "replace") and not isinstance(body, dict):
            raise failure(400, f"{verb} needs a {KINDS[plural].kind} object as the body")
        if verb == "create":
            return self.write(plural, body, namespace, create=True)
        current = self.objects.get((plural, namespace, str(name)))
        if current is None:
            raise failure(404, f'{plural} "{name}" not found', name=str(name), kind=plural)
        if verb == "get":
            return current
        if verb == "delete":
            self.delete(plural, namespace, str(name))
            return status(200, f'{plural} "{name}" deleted', name=str(name), kind=plural)
        if verb == "replace":
            if body.get("metadata", {}).get("name") != name:
                raise failure(400, "the name of the object does not match the name on the URL")
            return self.write(plural, body, namespace, create=False)
        json_patch = "json-patch" in request.headers.get("Content-Type", "")
        patched = jsonpatch.apply_patch(current, body) if json_patch else merge_patch(current, body)
        return self.write(plural, patched, namespace, create=False)

    def _list(self, plural: str, namespace: str | None, params: Mapping[str, str]) -> Obj:
        token, limit = params.get("continue"), int(params.get("limit") or 0)
        if token:
            if token not in self.pages:
                raise failure(410, "The provided continue parameter is too old to display a consistent list result.")
            version, items, start = self.pages.pop(token)
        else:
            requirements = parse_selector(params.get("labelSelector", ""))
            version, start = self.version, 0
            items = [
                {key: value for key, value in obj.items() if key not in ("kind", "apiVersion")}
                for (p, ns, _), obj in sorted(self.objects.items())
                if p == plural and namespace in (None, ns) and selects(requirements, obj)
            ]
        end = start + limit if limit else len(items)
        meta: Obj = {"resourceVersion": str(version)}
        if end < len(items):
            meta["continue"] = next_token = uuid.uuid4().hex
            self.pages[next_token] = (version, items, end)
        return {"kind": f"{KINDS[plural].kind}List", "apiVersion": "v1", "metadata": meta, "items": items[start:end]}

    def _watch(
        self, request: kmock.Request, plural: str, namespace: str | None, params: Mapping[str, str]
    ) -> kmock.Payload:
        requirements = parse_selector(params.get("labelSelector", ""))
        since = params.get("resourceVersion", "")
        start = None if since in ("", "0") else int(since)
        timeout_s = float(params.get("timeoutSeconds") or 1800)
        bookmarks = params.get("allowWatchBookmarks") == "true"
        return self._stream(OpenWatch(request), plural, namespace, requirements, start, timeout_s, bookmarks)

    async def _stream(
        self,
        watch: OpenWatch,
        plural: str,
        namespace: str | None,
        requirements: list[Requirement],
        start: int | None,
        timeout_s: float,
        bookmarks: bool,
    ) -> AsyncIterator[kmock.Payload]:
        deadline = asyncio.get_running_loop().time() + timeout_s
        self.watches.append(watch)
        try:
            yield b""  # the headers go out now, as kube-apiserver sends them, even if nothing happens for a while
            cursor = self.version if start is None else start
            if start is None:  # "" or "0": the current state first
                for (p, ns, _), obj in sorted(self.objects.items()):
                    if p == plural and namespace in (None, ns) and selects(requirements, obj):
                        yield {"type": "ADDED", "object": obj}
            while True:
                if cursor < self.oldest:
                    message = f"too old resource version: {cursor} ({self.oldest})"
                    yield {"type": "ERROR", "object": status(410, message)}
                    return
                wakeup = self.wakeup
                for change in self.history[bisect.bisect_right(self.history, cursor, key=lambda c: c.version) :]:
                    cursor = change.version
                    if event := change.seen_by(plural, namespace, requirements):
                        yield event
                if watch.dropped:
                    watch.abort()
                    return
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    return
                try:
                    await asyncio.wait_for(wakeup.wait(), min(remaining, self.bookmark_interval_s))
                except TimeoutError:
                    if bookmarks:
                        version = {"resourceVersion": str(cursor)}
                        bookmark = {"kind": KINDS[plural].kind, "apiVersion": "v1", "metadata": version}
                        yield {"type": "BOOKMARK", "object": bookmark}
        finally:
            self.watches.remove(watch)
