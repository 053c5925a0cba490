"""Where one plugin server listens; shared by the three servers' settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSettings:
    """Where one plugin server listens: gRPC for Envoy, HTTP for Prometheus."""

    host: str
    grpc_port: int
    metrics_port: int
    drain_seconds: float

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.grpc_port}"
