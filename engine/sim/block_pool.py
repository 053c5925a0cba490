"""The physical KV cache blocks: who holds them, which are free, and which free ones still hold a cached prefix.

Blocks are numbered ``0 .. num_blocks - 1``. A block is free when no sequence holds it (reference count 0). A free
block whose content was hashed stays in the prefix cache, found by its hash, until an allocation takes it; so
"free" includes evictable cached blocks, as vLLM V1 counts them, and ``usage`` is the share of blocks held.

The free queue orders reuse as vLLM's does: allocation takes the front; a freed block that is cached goes to the
back, so cached blocks are evicted least recently freed first (LRU); a freed block that is not cached goes to the
front, since nothing would ever find it again.
"""

from collections import OrderedDict
from collections.abc import Iterable


class BlockPool:
    def __init__(self, num_blocks: int) -> None:
        self.num_blocks = num_blocks
        self._ref_counts = [0] * num_blocks
        self._hash_of: list[int | None] = [None] * num_blocks
        self._block_by_hash: dict[int, int] = {}
        # The first key is the next block to hand out; OrderedDict pops, appends and prepends in O(1).
        self._free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def usage(self) -> float:
        """Share of the blocks that sequences hold, vLLM's ``kv_cache_usage_perc``."""
        # vLLM writes 1 - free / total; this is the same share without the rounding of the subtraction.
        return (self.num_blocks - len(self._free)) / self.num_blocks

    def cached_block(self, block_hash: int) -> int | None:
        return self._block_by_hash.get(block_hash)

    def is_free(self, block: int) -> bool:
        return self._ref_counts[block] == 0

    def free_queue(self) -> list[int]:
        """The free blocks in the order allocation would take them."""
        return list(self._free)

    def touch(self, blocks: Iterable[int]) -> None:
        """Take one more reference on cached blocks a sequence reuses; a free one leaves the free queue."""
        for block in blocks:
            if self._ref_counts[block] == 0:
                del self._free[block]
            self._ref_counts[block] += 1

    def allocate(self, count: int) -> list[int]:
        """Take ``count`` blocks from the front of the free queue, evicting what they cached.

        The caller has checked ``count <= num_free``.
        """
        blocks = []
        for _ in range(count):
            block, _ = self._free.popitem(last=False)
            evicted = self._hash_of[block]
            if evicted is not None:
                del self._block_by_hash[evicted]
                self._hash_of[block] = None
            self._ref_counts[block] = 1
            blocks.append(block)
        return blocks

    def cache(self, block: int, block_hash: int) -> None:
        """Make a full block findable by its hash. When another block already holds the same content (two
        sequences computed it at once) the first one stays the cached copy and this one stays anonymous."""
        if block_hash not in self._block_by_hash:
            self._block_by_hash[block_hash] = block
            self._hash_of[block] = block_hash

    def free(self, blocks: Iterable[int]) -> None:
        """Drop one reference on each block; pass them in eviction order, the block to evict first first."""
        anonymous = []
        for block in blocks:
            self._ref_counts[block] -= 1
            if self._ref_counts[block] > 0:
                continue
            if self._hash_of[block] is None:
                anonymous.append(block)
            else:
                self._free[block] = None
        for block in reversed(anonymous):
            self._free[block] = None
            self._free.move_to_end(block, last=False)
