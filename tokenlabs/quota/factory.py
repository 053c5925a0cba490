"""The quota store a server counts in, chosen by ``quota_store`` in the settings."""

from __future__ import annotations

from tokenlabs.quota.failover import FailoverQuotaStore
from tokenlabs.quota.memory import MemoryQuotaStore
from tokenlabs.quota.redis_store import RedisQuotaStore
from tokenlabs.quota.store import QuotaStore
from tokenlabs.settings import QuotaStoreSettings
from tokenlabs.telemetry import Telemetry


def open_quota_store(settings: QuotaStoreSettings, telemetry: Telemetry) -> QuotaStore:
    """``memory://``: this process's counters (exact for one replica). A Redis URL: counters shared by every
    replica, behind the configured failure mode. Nothing connects until the first call; ``close()`` the result."""
    if settings.is_memory:
        return MemoryQuotaStore()
    return FailoverQuotaStore(RedisQuotaStore(settings.url, settings.timeout_s), settings.failure_mode, telemetry)
