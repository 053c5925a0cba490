"""``KubernetesStore``: tenant Secrets in one namespace, through the official client's ``CoreV1Api``.

``create`` sends the key base64-encoded in ``data`` (a 409 becomes ``AlreadyExists``); ``set_key`` and ``set_tier``
are JSON merge patches touching only ``data.api_key`` or the tier annotation, so one request changes the Secret and
nothing else about it; ``delete`` deletes (a 404 becomes ``NotFound``); ``list_tenants`` asks the server for the tenants
source's label selector, the same Secrets authz watches.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from authz.admin import AlreadyExists, NotFound, StoreError, TenantRecord, records, timestamp
from authz.admin.manifest import encoded
from authz.secrets import KEY_FIELD, TIER_ANNOTATION

# The patch bodies here are RFC 7386 merge patches: say so rather than leave the patch type to the client's guess
# from the body's Python type.
MERGE_PATCH = "application/merge-patch+json"
# Without a timeout the client waits forever on an API server that accepted the connection but never answers.
REQUEST_TIMEOUT_S = 30.0


class KubernetesStore:
    def __init__(self, api: client.CoreV1Api, namespace: str, label_selector: str) -> None:
        self._api = api
        self._namespace = namespace
        self._label_selector = label_selector

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def location(self) -> str:
        return f"namespace {self._namespace}"

    def get(self, secret: str) -> dict[str, Any]:
        with self._translated(secret):
            found = self._api.read_namespaced_secret(secret, self._namespace, _request_timeout=REQUEST_TIMEOUT_S)
        return self._document(found)

    def list_tenants(self, known_tiers: frozenset[str]) -> list[TenantRecord]:
        with self._translated():
            items = self._api.list_namespaced_secret(
                self._namespace, label_selector=self._label_selector, _request_timeout=REQUEST_TIMEOUT_S
            ).items
        found: list[tuple[Mapping[str, Any], datetime | None]] = []
        for item in items:
            document = self._document(item)
            found.append((document, timestamp(document["metadata"].get("creationTimestamp"))))
        return records(found, known_tiers)

    def create(self, document: Mapping[str, Any]) -> None:
        secret = str(document["metadata"]["name"])
        body = client.V1Secret.model_validate(encoded(document))
        with self._translated(secret, creating=True):
            self._api.create_namespaced_secret(self._namespace, body, _request_timeout=REQUEST_TIMEOUT_S)

    def set_key(self, secret: str, key: str) -> None:
        value = base64.b64encode(key.encode("utf-8")).decode("ascii")
        self._patch(secret, {"data": {KEY_FIELD: value}})

    def set_tier(self, secret: str, tier: str) -> None:
        self._patch(secret, {"metadata": {"annotations": {TIER_ANNOTATION: tier}}})

    def delete(self, secret: str) -> None:
        with self._translated(secret):
            self._api.delete_namespaced_secret(secret, self._namespace, _request_timeout=REQUEST_TIMEOUT_S)

    def _patch(self, secret: str, body: dict[str, Any]) -> None:
        with self._translated(secret):
            self._api.patch_namespaced_secret(
                secret, self._namespace, body, _content_type=MERGE_PATCH, _request_timeout=REQUEST_TIMEOUT_S
            )

    def _document(self, secret: client.V1Secret) -> dict[str, Any]:
        """The Secret as the API's JSON; list items come without kind and apiVersion, which parse_secret needs."""
        document: dict[str, Any] = self._api.api_client.sanitize_for_serialization(secret)
        document.setdefault("metadata", {})
        return {**document, "apiVersion": "v1", "kind": "Secret"}

    @contextmanager
    def _translated(self, secret: str | None = None, *, creating: bool = False) -> Iterator[None]:
        """API failures as ``AdminError``s naming the Secret; only the server's Status message is shown, never a
        response body (which could echo a key back). A 404 on create is about the namespace, not the Secret."""
        try:
            yield
        except ApiException as exc:
            if exc.status == 404 and secret is not None and not creating:
                raise NotFound(f"{secret} not found in {self.location}") from None
            if exc.status == 409 and creating:
                raise AlreadyExists(f"{secret} already exists in {self.location}") from None
            raise StoreError(
                f"Kubernetes API error {exc.status} {exc.reason} ({self.location}): {_status_message(exc)}"
            ) from None
        except urllib3.exceptions.HTTPError as exc:
            host = self._api.api_client.configuration.host
            cause = getattr(exc, "reason", None) or type(exc).__name__
            raise StoreError(f"no answer from the Kubernetes API at {host}: {cause}") from None


def _status_message(exc: ApiException) -> str:
    try:
        status = json.loads(exc.body or "")
    except ValueError:
        return "no Status in the response"
    message = status.get("message") if isinstance(status, dict) else None
    return str(message) if message else "no message"
