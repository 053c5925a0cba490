"""Tenant sources: each watches somewhere for Secrets and publishes immutable ``TenantSnapshot``s.

Contract (``TenantSource``): ``start()`` returns once the first complete snapshot is published (the server turns
SERVING only then); later changes replace the snapshot atomically; ``current`` never blocks; ``stop()`` ends the
background work.
"""

from __future__ import annotations

from typing import Protocol

from authz.snapshot import TenantSnapshot


class TenantSource(Protocol):
    @property
    def current(self) -> TenantSnapshot: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
