"""tokenlabs: the shared kernel of the gateway plugin servers (settings, server scaffold, telemetry, errors)."""

__version__ = "0.1.0"
