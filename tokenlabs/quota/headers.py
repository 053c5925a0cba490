"""OpenAI's rate-limit response headers from a store's answer.

``x-ratelimit-limit-<unit>`` / ``-remaining-<unit>`` / ``-reset-<unit>`` describe the window the client is closest to
exhausting (``Admission.binding``); the reset is a Go-style duration like OpenAI's (``20ms``, ``8.64s``, ``6m0s``).
``retry-after`` is whole seconds, rounded up, so a client that waits that long finds room.
"""

from __future__ import annotations

import math

from tokenlabs.quota.windows import WindowState

HeaderPairs = tuple[tuple[str, str], ...]


def format_reset(seconds: float) -> str:
    if seconds < 1:
        return f"{max(math.ceil(seconds * 1000), 0)}ms"
    if seconds < 60:
        return f"{math.ceil(seconds * 100) / 100:g}s"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes}m{secs}s" if hours else f"{minutes}m{secs}s"


def ratelimit_headers(unit: str, state: WindowState | None) -> HeaderPairs:
    """The three headers for ``unit`` ("requests" or "tokens"); none when no limit applies."""
    if state is None:
        return ()
    return (
        (f"x-ratelimit-limit-{unit}", str(state.limit.limit)),
        (f"x-ratelimit-remaining-{unit}", str(state.remaining)),
        (f"x-ratelimit-reset-{unit}", format_reset(state.reset_s)),
    )


def retry_after(seconds: float) -> int:
    return max(math.ceil(seconds), 1)
