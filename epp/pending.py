"""Requests this picker sent to each endpoint recently, so a cycle can count those its metrics do not show yet.

Scrapes are ``scrape_interval`` apart; between two of them every cycle would otherwise see the same queue lengths
and send the whole burst to the same "best" endpoint (herding). Picks older than ``horizon_s`` are dropped: by then
every scrape reflects them.
"""

from __future__ import annotations

from collections import deque


class PendingPicks:
    def __init__(self, horizon_s: float) -> None:
        self._horizon_s = horizon_s
        self._picks: dict[str, deque[tuple[float, int]]] = {}

    def record(self, address: str, at: float, tokens: int) -> None:
        picks = self._picks.get(address)
        if picks is None:
            picks = self._picks[address] = deque()
        picks.append((at, tokens))
        while picks and picks[0][0] < at - self._horizon_s:
            picks.popleft()

    def since(self, address: str, since: float) -> tuple[int, int]:
        """How many picks (and their prompt tokens) were made at or after ``since``."""
        picks = self._picks.get(address)
        if not picks:
            return 0, 0
        count = tokens = 0
        for at, pick_tokens in reversed(picks):
            if at < since:
                break
            count += 1
            tokens += pick_tokens
        return count, tokens

    def forget(self, address: str) -> None:
        self._picks.pop(address, None)
