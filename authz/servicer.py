"""ext_authz ``Check``: a thin translation between Envoy's CheckRequest/CheckResponse and ``authz.policy``.

One store round trip per check at most (every request window of the tenant's tier in one atomic call). It always
answers: a store failure in fail-closed mode, or any unexpected failure, becomes a 503 deny with a logged reason,
never an error to Envoy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from envoy.service.auth.v3 import external_auth_pb2 as authz_pb2
from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc

from authz.policy import Allow, Deny, Identified, content_length, credential, identify, judge
from authz.snapshot import TenantSnapshot
from authz.tiers import TierPolicy
from tokenlabs import envoy_messages, headers
from tokenlabs.errors import Unavailable, http_error
from tokenlabs.quota.scopes import requests_scope
from tokenlabs.quota.store import QuotaStore, QuotaStoreError
from tokenlabs.telemetry import Telemetry

log = logging.getLogger(__name__)

SERVICE_NAME = envoy_messages.EXT_AUTHZ_SERVICE
# The tenant headers are overwritten with ours; the rest of the gateway-owned ones are dropped.
_REMOVED_HEADERS = (*headers.CREDENTIALS, headers.MODEL, headers.DESTINATION_ENDPOINT)
# Envoy's local_reply_config gives every authz 503 this code; ours says the same.
_UNAVAILABLE = Unavailable("Authorization is temporarily unavailable.", code="authorization_unavailable")


class AuthorizationServicer(authz_grpc.AuthorizationServicer):  # type: ignore[misc]
    def __init__(
        self,
        snapshot: Callable[[], TenantSnapshot],
        policies: Mapping[str, TierPolicy],
        store: QuotaStore,
        telemetry: Telemetry,
        max_body_bytes: int,
    ) -> None:
        self._snapshot = snapshot
        self._policies = policies
        self._store = store
        self._max_body_bytes = max_body_bytes
        self._telemetry = telemetry
        self._decisions = telemetry.counter(
            "tokenlabs_authz_decisions", "Authorization decisions by result and reason.", ("result", "reason")
        )

    async def Check(self, request: authz_pb2.CheckRequest, context: Any) -> authz_pb2.CheckResponse:
        started = time.perf_counter()
        http = request.attributes.request.http
        try:
            decision = await self._decide(http)
        except QuotaStoreError as exc:
            log.warning("rate-limit store unavailable; refusing (fail-closed)", extra={"error": str(exc)})
            decision = Deny(_UNAVAILABLE, "store_unavailable")
        except Exception:
            log.exception("authorization check failed")
            decision = Deny(_UNAVAILABLE, "internal")
        if isinstance(decision, Allow):
            response, result, reason = self._allow(decision), "allow", "ok"
        else:
            if decision.reason != "rate_limited":
                log.info("denied", extra={"reason": decision.reason, "path": http.path})
            response = envoy_messages.authz_deny(http_error(decision.error, decision.headers))
            result, reason = "deny", decision.reason
        self._decisions.add((result, reason))
        self._telemetry.record_decision("check", result, time.perf_counter() - started)
        return response

    async def _decide(self, http: Any) -> Allow | Deny:
        identified = identify(
            credential(http.headers),
            content_length(http.headers),
            http.path,
            self._snapshot(),
            self._policies,
            self._max_body_bytes,
        )
        if not isinstance(identified, Identified):
            return identified
        limits = identified.policy.request_limits
        if not limits:
            return judge(identified, None)
        admission = await self._store.acquire(requests_scope(identified.tenant.tenant_id), limits, 1)
        return judge(identified, admission)

    @staticmethod
    def _allow(decision: Allow) -> authz_pb2.CheckResponse:
        tenant = decision.tenant
        return envoy_messages.authz_allow(
            set_headers=((headers.TENANT_ID, tenant.tenant_id), (headers.TENANT_TIER, tenant.tier)),
            remove=_REMOVED_HEADERS,
            response_headers=decision.response_headers,
            dynamic_metadata={"tenant_id": tenant.tenant_id, "tier": tenant.tier},
        )
