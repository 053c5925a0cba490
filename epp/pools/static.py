"""A pool whose members are listed in the config file: known at once, never changing."""

from __future__ import annotations


class StaticEndpoints:
    def __init__(self, endpoints: tuple[str, ...]) -> None:
        self._endpoints = endpoints

    @property
    def current(self) -> tuple[str, ...]:
        return self._endpoints

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
