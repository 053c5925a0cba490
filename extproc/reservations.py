"""Token reservations in the quota store: reserve at admission, settle with the real charge when the response ends.

Each window family of the tier (all tokens; prompt; completion) is one scope in the store, reserved with one
atomic call. A refusal in a later family releases what the earlier ones reserved, so a refused request holds
nothing. ``settle`` adjusts the very windows the reservation was made in: a request reserved in one minute and
finished in the next is charged to the minute it was admitted in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from extproc.quota import TokenLimits, Tokens
from tokenlabs.errors import QuotaExceeded
from tokenlabs.quota.headers import HeaderPairs, ratelimit_headers, retry_after
from tokenlabs.quota.scopes import completion_tokens_scope, prompt_tokens_scope, tokens_scope
from tokenlabs.quota.store import QuotaStore
from tokenlabs.quota.windows import Admission, Limit, WindowState

log = logging.getLogger(__name__)

# (family label, scope for a tenant, limits of the family, amount of a Tokens for it)
_Family = tuple[str, Callable[[str], str], Callable[[TokenLimits], tuple[Limit, ...]], Callable[[Tokens], int]]
_FAMILIES: tuple[_Family, ...] = (
    ("tokens", tokens_scope, lambda limits: limits.total, lambda tokens: tokens.total),
    ("prompt tokens", prompt_tokens_scope, lambda limits: limits.prompt, lambda tokens: tokens.prompt),
    ("completion tokens", completion_tokens_scope, lambda limits: limits.completion, lambda tokens: tokens.completion),
)


@dataclass(frozen=True)
class Held:
    family: str
    scope: str
    windows: tuple[WindowState, ...]
    amount: int


@dataclass(frozen=True)
class Reservation:
    reserved: Tokens
    held: tuple[Held, ...]
    headers: HeaderPairs  # x-ratelimit-*-tokens for the client's response


@dataclass(frozen=True)
class Refusal:
    error: QuotaExceeded
    headers: HeaderPairs


def _amounts(tokens: Tokens) -> dict[str, int]:
    return {label: amount_of(tokens) for label, _, _, amount_of in _FAMILIES}


class Reservations:
    """Reserve and settle token quotas in ``store``; ``QuotaStoreError`` propagates (the store's failure mode)."""

    def __init__(self, store: QuotaStore) -> None:
        self._store = store

    async def reserve(self, tenant: str, limits: TokenLimits, tokens: Tokens) -> Reservation | Refusal:
        held: list[Held] = []
        headers: HeaderPairs = ()
        for label, scope_of, limits_of, amount_of in _FAMILIES:
            windows = limits_of(limits)
            if not windows:
                continue
            scope, amount = scope_of(tenant), amount_of(tokens)
            admission = await self._store.acquire(scope, windows, amount)
            if not headers:
                headers = ratelimit_headers("tokens", admission.binding)
            if not admission.admitted:
                await self.release(held)
                return Refusal(self._refusal(label, admission, amount), headers)
            held.append(Held(label, scope, admission.windows, amount))
        return Reservation(tokens, tuple(held), headers)

    async def settle(self, reservation: Reservation, charged: Tokens) -> None:
        amounts = _amounts(charged)
        for held in reservation.held:
            delta = amounts[held.family] - held.amount
            if delta:
                await self._store.adjust(held.scope, held.windows, delta)

    async def release(self, held: list[Held] | tuple[Held, ...]) -> None:
        for entry in held:
            await self._store.adjust(entry.scope, entry.windows, -entry.amount)

    @staticmethod
    def _refusal(label: str, admission: Admission, amount: int) -> QuotaExceeded:
        wait = retry_after(admission.retry_after_s)
        blocked = [state for state in admission.windows if not state.fits]
        detail = ", ".join(f"{state.limit.limit} per {state.limit.name}, {state.remaining} left" for state in blocked)
        return QuotaExceeded(
            f"Rate limit reached for {label} ({detail}); this request needs up to {amount}. "
            f"Lower max_tokens or retry after {wait}s.",
            retry_after_s=wait,
        )
