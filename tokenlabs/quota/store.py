"""The quota store contract, one interface for the in-memory, Redis and fail-over stores.

A *scope* names what is counted for whom (``"requests:acme"``, ``"tokens:acme"``); each scope has one counter per
``Limit`` window. Implementations guarantee:

- ``acquire`` is atomic across every window of the call and every replica sharing the store: either ``amount`` is
  added to all the scope's current windows (each stays within its limit) or to none. One round trip.
- ``adjust`` adds ``delta`` (may be negative) to the windows identified by ``WindowState.index`` from an earlier
  ``acquire``, unconditionally, and only while that window is still current: a reservation made in one minute is
  settled in that minute, never in the next. Counters never go below zero.
- ``peek`` reads the current windows without changing them.
- Failures raise ``QuotaStoreError`` (never hang longer than the store's configured timeout).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tokenlabs.quota.windows import Admission, Limit, WindowState

# The arguments of one ``adjust``: scope, windows, delta.
Adjustment = tuple[str, Sequence[WindowState], int]


class QuotaStoreError(Exception):
    """The store could not be reached or answered nonsense; the caller's failure mode decides what happens."""


class QuotaStore(Protocol):
    async def acquire(self, scope: str, limits: Sequence[Limit], amount: int = 1) -> Admission: ...

    async def adjust(self, scope: str, windows: Sequence[WindowState], delta: int) -> None: ...

    async def peek(self, scope: str, limits: Sequence[Limit]) -> tuple[WindowState, ...]: ...

    async def close(self) -> None: ...
