"""Inference pools: which endpoints serve which model, and where each pool's member list comes from.

Contract (``EndpointSource``): ``start()`` returns once the first complete member list is known (the picker turns
SERVING only then); later changes replace ``current`` atomically with a new immutable tuple; ``current`` never
blocks; ``stop()`` ends the background work. Members are ``ip:port`` strings, the form Envoy's ORIGINAL_DST
cluster takes, in a stable order.
"""

from __future__ import annotations

from typing import Protocol


class EndpointSource(Protocol):
    @property
    def current(self) -> tuple[str, ...]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
