"""``tokenlabs.v1.UsageService``: each tenant's totals from this replica's metering ledger, and its rate windows
from the quota store.

Totals are this extproc replica's since it started (see ``extproc.metering``): a tenant it has not served is
NOT_FOUND here even if another replica served it. Windows are read with ``peek``, which counts nothing: requests
in ``requests_scope`` and tokens in ``tokens_scope``, against the limits of the tenant's last-seen tier in this
replica's config. A count the tier does not limit is not read (authz keeps none for it; usage.proto says how
that shows). A store that can not be read answers UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

from extproc.metering import Metering, TenantTotals
from tokenlabs.quota.scopes import requests_scope, tokens_scope
from tokenlabs.quota.store import QuotaStore, QuotaStoreError
from tokenlabs.quota.tier_limits import request_limits, token_limits
from tokenlabs.quota.windows import DAY, MINUTE, Limit, WindowState
from tokenlabs.server import ServiceBinding
from tokenlabs.settings import TierSettings
from tokenlabs.v1 import usage_pb2, usage_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME: str = usage_pb2.DESCRIPTOR.services_by_name["UsageService"].full_name
# Tenants whose windows ListTenantUsage reads at once: a shared store costs a round trip per read, and one tenant
# after another would take two round trips per tenant served.
READ_CONCURRENCY = 16
_WINDOWS = ((usage_pb2.WINDOW_MINUTE, MINUTE), (usage_pb2.WINDOW_DAY, DAY))


@dataclass(frozen=True)
class _TierLimits:
    requests: tuple[Limit, ...]
    tokens: tuple[Limit, ...]


class UsageServicer(usage_pb2_grpc.UsageServiceServicer):
    """Serves ``metering``'s ledger with windows read from ``store`` (the store this extproc counts tokens in),
    against the limits of ``tiers``. ``clock`` (epoch seconds) turns a window's time to reset into ``resets_at``."""

    def __init__(
        self,
        metering: Metering,
        store: QuotaStore,
        tiers: Mapping[str, TierSettings],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._metering = metering
        self._store = store
        self._limits = {name: _TierLimits(request_limits(tier), token_limits(tier)) for name, tier in tiers.items()}
        self._clock = clock

    async def GetTenantUsage(
        self, request: usage_pb2.GetTenantUsageRequest, context: Any
    ) -> usage_pb2.GetTenantUsageResponse:
        if not request.tenant_id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "tenant_id is required")
        totals = self._metering.totals(request.tenant_id)
        if totals is None:
            await _abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"tenant {request.tenant_id!r} has not been served by this extproc replica since it started",
            )
        usage = tenant_usage(request.tenant_id, totals)
        try:
            await self._add_windows(usage)
        except QuotaStoreError as error:
            await _store_unavailable(context, error)
        return usage_pb2.GetTenantUsageResponse(usage=usage)

    async def ListTenantUsage(
        self, request: usage_pb2.ListTenantUsageRequest, context: Any
    ) -> usage_pb2.ListTenantUsageResponse:
        usages = [tenant_usage(tenant, totals) for tenant, totals in sorted(self._metering.ledger().items())]
        try:
            await self._add_all_windows(usages)
        except QuotaStoreError as error:
            await _store_unavailable(context, error)
        return usage_pb2.ListTenantUsageResponse(tenants=usages)

    async def _add_all_windows(self, usages: Sequence[usage_pb2.TenantUsage]) -> None:
        """``_add_windows`` for each, at most ``READ_CONCURRENCY`` at once; the first store failure cancels the
        other reads and is raised."""
        pending = iter(usages)

        async def reader() -> None:
            for usage in pending:  # one iterator shared by the readers: each tenant is read once
                await self._add_windows(usage)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(READ_CONCURRENCY, len(usages))):
                    group.create_task(reader())
        except* QuotaStoreError as failures:
            raise failures.exceptions[0] from None

    async def _add_windows(self, usage: usage_pb2.TenantUsage) -> None:
        limits = self._limits.get(usage.tier)
        if limits is None:  # a tier this replica's config does not know (or none yet): no limits to report
            return
        requests = await self._peek(requests_scope(usage.tenant_id), limits.requests)
        tokens = await self._peek(tokens_scope(usage.tenant_id), limits.tokens)
        usage.windows.extend(window_usages(requests, tokens, self._clock()))

    async def _peek(self, scope: str, limits: tuple[Limit, ...]) -> tuple[WindowState, ...]:
        # Nothing to read without limits; and a store that is failing closed would refuse even that empty read.
        return await self._store.peek(scope, limits) if limits else ()


def tenant_usage(tenant_id: str, totals: TenantTotals) -> usage_pb2.TenantUsage:
    """The ledger part of a tenant's usage; its windows are added from the store."""
    return usage_pb2.TenantUsage(
        tenant_id=tenant_id,
        tier=totals.tier,
        models=[
            usage_pb2.ModelUsage(
                model=model,
                requests=counts.requests,
                prompt_tokens=counts.prompt_tokens,
                completion_tokens=counts.completion_tokens,
                cost_usd=counts.cost_usd,
            )
            for model, counts in sorted(totals.models.items())
        ],
        requests=totals.requests,
        prompt_tokens=totals.prompt_tokens,
        completion_tokens=totals.completion_tokens,
        cost_usd=totals.cost_usd,
    )


def window_usages(
    requests: Sequence[WindowState], tokens: Sequence[WindowState], now: float
) -> list[usage_pb2.WindowUsage]:
    """Minute then day, each present when a request or a token state is; a missing state leaves its limit unset
    and its count and remaining 0."""
    request_states = {state.limit.seconds: state for state in requests}
    token_states = {state.limit.seconds: state for state in tokens}
    windows = []
    for window, seconds in _WINDOWS:
        request_state, token_state = request_states.get(seconds), token_states.get(seconds)
        known = [state for state in (request_state, token_state) if state is not None]
        if not known:
            continue
        message = usage_pb2.WindowUsage(window=window)
        if request_state is not None:
            message.requests = request_state.used
            message.request_limit = request_state.limit.limit
            message.requests_remaining = request_state.remaining
        if token_state is not None:
            message.tokens = token_state.used
            message.token_limit = token_state.limit.limit
            message.tokens_remaining = token_state.remaining
        # Windows end on whole seconds; rounding drops the time the read took.
        message.resets_at.FromSeconds(round(now + known[0].reset_s))
        windows.append(message)
    return windows


async def _store_unavailable(context: Any, error: QuotaStoreError) -> NoReturn:
    log.warning("usage: quota store unavailable", extra={"error": str(error)})
    await _abort(context, grpc.StatusCode.UNAVAILABLE, f"the quota store could not be read: {error}")


async def _abort(context: Any, code: grpc.StatusCode, message: str) -> NoReturn:
    """End the RPC with ``code``: ``context.abort`` raises; typed so that callers need no return after it."""
    await context.abort(code, message)
    raise AssertionError("context.abort returned")


def usage_binding(metering: Metering, store: QuotaStore, tiers: Mapping[str, TierSettings]) -> ServiceBinding:
    """The UsageService for ``PluginServer``: ``metering`` and ``store`` must be the ones the ext_proc servicer
    records into and counts tokens in, ``tiers`` the settings' tiers."""
    return ServiceBinding(
        SERVICE_NAME, usage_pb2_grpc.add_UsageServiceServicer_to_server, UsageServicer(metering, store, tiers)
    )
