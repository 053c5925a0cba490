"""A tier's limits as quota-store ``Limit``s: authz counts requests with them, extproc counts tokens, and the
usage service reads both. A limit the tier leaves unset is absent: that window is not limited."""

from __future__ import annotations

from tokenlabs.quota.windows import DAY, MINUTE, Limit
from tokenlabs.settings import TierSettings


def request_limits(tier: TierSettings) -> tuple[Limit, ...]:
    """The tier's request limits, minute before day; empty when it sets none."""
    return window_limits(tier.requests_per_minute, tier.requests_per_day)


def token_limits(tier: TierSettings) -> tuple[Limit, ...]:
    """The tier's limits on all tokens (prompt plus completion), minute before day; empty when it sets none."""
    return window_limits(tier.tokens_per_minute, tier.tokens_per_day)


def window_limits(per_minute: int | None, per_day: int | None) -> tuple[Limit, ...]:
    """``Limit("minute", ...)`` and ``Limit("day", ...)`` for the amounts that are set, in that order."""
    windows = (("minute", MINUTE, per_minute), ("day", DAY, per_day))
    return tuple(Limit(name, seconds, limit) for name, seconds, limit in windows if limit is not None)
