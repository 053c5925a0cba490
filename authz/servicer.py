"""ext_authz ``Check``: a thin translation between Envoy's CheckRequest/CheckResponse and ``policy.decide``.

It always answers: any unexpected failure becomes a 503 deny with a logged reason, never an error to Envoy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from envoy.service.auth.v3 import external_auth_pb2 as authz_pb2
from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc

from authz.policy import Allow, content_length, credential, decide
from authz.snapshot import TenantSnapshot
from tokenlabs import envoy_messages, headers
from tokenlabs.errors import Unavailable, http_error
from tokenlabs.telemetry import Telemetry

log = logging.getLogger(__name__)

SERVICE_NAME = envoy_messages.EXT_AUTHZ_SERVICE
# The tenant headers are overwritten with ours; the rest of the gateway-owned ones are dropped.
_REMOVED_HEADERS = (*headers.CREDENTIALS, headers.MODEL, headers.DESTINATION_ENDPOINT)


class AuthorizationServicer(authz_grpc.AuthorizationServicer):  # type: ignore[misc]
    def __init__(self, snapshot: Callable[[], TenantSnapshot], telemetry: Telemetry, max_body_bytes: int) -> None:
        self._snapshot = snapshot
        self._max_body_bytes = max_body_bytes
        self._telemetry = telemetry
        self._decisions = telemetry.counter(
            "tokenlabs_authz_decisions", "Authorization decisions by result and reason.", ("result", "reason")
        )

    async def Check(self, request: authz_pb2.CheckRequest, context: Any) -> authz_pb2.CheckResponse:
        started = time.perf_counter()
        try:
            response, result, reason = self._check(request)
        except Exception:
            log.exception("authorization check failed")
            error = http_error(Unavailable("Authorization is temporarily unavailable."))
            response, result, reason = envoy_messages.authz_deny(error), "error", "internal"
        self._decisions.add((result, reason))
        self._telemetry.record_decision("check", result, time.perf_counter() - started)
        return response

    def _check(self, request: authz_pb2.CheckRequest) -> tuple[authz_pb2.CheckResponse, str, str]:
        http_headers = request.attributes.request.http.headers
        decision = decide(
            credential(http_headers), content_length(http_headers), self._snapshot(), self._max_body_bytes
        )
        if isinstance(decision, Allow):
            tenant = decision.tenant
            response = envoy_messages.authz_allow(
                set_headers=((headers.TENANT_ID, tenant.tenant_id), (headers.TENANT_TIER, tenant.tier)),
                remove=_REMOVED_HEADERS,
                response_headers=(),
                dynamic_metadata={"tenant_id": tenant.tenant_id, "tier": tenant.tier},
            )
            return response, "allow", "ok"
        log.info("denied", extra={"reason": decision.reason, "path": request.attributes.request.http.path})
        return envoy_messages.authz_deny(http_error(decision.error)), "deny", decision.reason
