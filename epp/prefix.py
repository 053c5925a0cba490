"""An approximate index of which endpoint holds which prompt prefix in its KV cache (GIE's prefix-cache plugin).

The prompt text is cut into blocks of ``block_chars`` characters; block i's hash covers the model and blocks 0..i
(a chain), so one hash stands for a whole prefix. Each endpoint keeps an LRU of the hashes of the prompts it was
sent, sized like its KV cache; the index is updated when a request is picked, not from the workers, so it is a
guess about their caches that is right as long as they evict roughly LRU too.

Blocks of one prompt are recorded last block first, so the short prefixes (shared most) are the most recently used
and are evicted last. That keeps "block i held ⇒ blocks < i held" true in practice, which lets ``matched_blocks``
find the longest held prefix by binary search instead of a scan.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

CHARS_PER_TOKEN = 4  # a byte-level BPE averages about 4 characters of English per token


def block_hashes(model: str, prompt: str, block_chars: int, max_blocks: int) -> tuple[int, ...]:
    """Chained hashes of the prompt's full blocks (a partial last block is not cacheable), at most ``max_blocks``."""
    count = min(len(prompt) // block_chars, max_blocks)
    hashes = []
    previous = hash(model)
    for start in range(0, count * block_chars, block_chars):
        previous = hash((previous, prompt[start : start + block_chars]))
        hashes.append(previous)
    return tuple(hashes)


class PrefixIndex:
    def __init__(self, block_chars: int, default_capacity_blocks: int) -> None:
        self.block_chars = block_chars
        self._default_capacity = default_capacity_blocks
        self._held: dict[str, OrderedDict[int, None]] = {}

    def capacity_blocks(self, cache_tokens: int | None) -> int:
        """Index blocks matching a KV cache of ``cache_tokens`` tokens (the default when unknown)."""
        if not cache_tokens:
            return self._default_capacity
        return max(1, cache_tokens * CHARS_PER_TOKEN // self.block_chars)

    def matched_blocks(self, hashes: Sequence[int], endpoints: Sequence[str]) -> Mapping[str, int]:
        """For each endpoint holding at least the first block, how many leading blocks it holds."""
        if not hashes:
            return {}
        first = hashes[0]
        matched: dict[str, int] = {}
        for endpoint in endpoints:
            held = self._held.get(endpoint)
            if held is None or first not in held:
                continue
            low, high = 1, len(hashes)  # blocks [0, low) are held; find the largest such low
            while low < high:
                middle = (low + high + 1) // 2
                if hashes[middle - 1] in held:
                    low = middle
                else:
                    high = middle - 1
            matched[endpoint] = low
        return matched

    def record(self, endpoint: str, hashes: Sequence[int], capacity_blocks: int) -> None:
        held = self._held.get(endpoint)
        if held is None:
            held = self._held[endpoint] = OrderedDict()
        for block in reversed(hashes):
            held[block] = None
            held.move_to_end(block)
        while len(held) > capacity_blocks:
            held.popitem(last=False)

    def forget(self, endpoint: str) -> None:
        self._held.pop(endpoint, None)

    def held_blocks(self, endpoint: str) -> int:
        held = self._held.get(endpoint)
        return len(held) if held is not None else 0
