"""Whether a pool is saturated: every candidate's queue or KV cache is at its threshold (GIE's saturation detector).

Pure; the servicer decides what to do with a saturated pool per ``epp.saturation.mode`` (shed → 429 at once,
queue → hold the request until an endpoint has room or the queue timeout passes, off → send it anyway).
"""

from __future__ import annotations

from collections.abc import Sequence

from epp.scheduling.interfaces import Candidate
from tokenlabs.picker_settings import SaturationSettings


def saturated(candidates: Sequence[Candidate], settings: SaturationSettings) -> bool:
    """True when no candidate has room; a pool without any candidate with fresh metrics is not "saturated" (it is
    unavailable, a 503)."""
    if not candidates:
        return False
    return all(
        candidate.metrics.waiting + candidate.pending >= settings.queue_depth
        or candidate.metrics.kv_cache_usage >= settings.kv_cache_usage
        for candidate in candidates
    )
