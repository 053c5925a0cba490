"""The KV cache of a worker: the blocks each sequence holds, and the prefix cache that lets sequences share them.

Blocks are allocated as a sequence grows, for the tokens scheduled in each step, never reserved ahead (vLLM V1).
With prefix caching, every full block gets a hash chained from its parent block's hash and its own tokens, so equal
hashes mean equal prefixes; a block is registered under its hash once its tokens are scheduled, and stays findable
after its sequence frees it until the block pool evicts it. A new sequence starts from the longest chain of cached
blocks of its tokens, but never from all of them: the last token is always computed, since sampling needs its
logits.
"""

from collections import abc

from engine.sim.block_pool import BlockPool
from engine.sim.sequence import Sequence


class KvCache:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool) -> None:
        self.pool = BlockPool(num_blocks)
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching

    @property
    def usage(self) -> float:
        return self.pool.usage

    def cached_prefix(self, sequence: Sequence) -> list[int]:
        """The cached blocks holding the longest prefix of the sequence's tokens, leaving at least its last token
        to compute. Looking does not take them: pass them to ``allocate``."""
        if not self.enable_prefix_caching:
            return []
        most = (sequence.num_tokens - 1) // self.block_size
        self._hash_blocks(sequence, most)
        hits = []
        for block_hash in sequence.block_hashes[:most]:
            block = self.pool.cached_block(block_hash)
            if block is None:
                break
            hits.append(block)
        return hits

    def allocate(self, sequence: Sequence, num_tokens: int, cached: abc.Sequence[int] = ()) -> bool:
        """Give the sequence blocks for its first ``num_tokens`` tokens, starting from the ``cached`` prefix blocks
        when it holds none yet. False, and nothing changed, when too few blocks are free."""
        missing = max(0, -(-num_tokens // self.block_size) - len(sequence.blocks) - len(cached))
        # Reusing a cached block that is free takes it out of the free blocks as surely as a new one does.
        reclaimed = sum(1 for block in cached if self.pool.is_free(block)) if cached else 0
        if missing + reclaimed > self.pool.num_free:
            return False
        if cached:
            self.pool.touch(cached)
            sequence.blocks.extend(cached)
            sequence.num_cached_blocks = len(cached)
        if missing:
            sequence.blocks.extend(self.pool.allocate(missing))
        return True

    def cache_full_blocks(self, sequence: Sequence, num_tokens: int) -> None:
        """Register in the prefix cache the sequence's blocks that its first ``num_tokens`` tokens fill."""
        full = num_tokens // self.block_size
        if not self.enable_prefix_caching or full <= sequence.num_cached_blocks:
            return
        self._hash_blocks(sequence, full)
        for index in range(sequence.num_cached_blocks, full):
            self.pool.cache(sequence.blocks[index], sequence.block_hashes[index])
        sequence.num_cached_blocks = full

    def free(self, sequence: Sequence) -> None:
        """Give back every block of the sequence. Its tail goes first so that, once evictable, a shared prefix
        outlives the blocks only this sequence used."""
        self.pool.free(reversed(sequence.blocks))
        sequence.blocks = []
        sequence.num_cached_blocks = 0

    def _hash_blocks(self, sequence: Sequence, count: int) -> None:
        hashes = sequence.block_hashes
        size = self.block_size
        parent = hashes[-1] if hashes else None
        for index in range(len(hashes), count):
            # Python's tuple hash is stable within the process, which is as long as the cache lives.
            parent = hash((parent, sequence.tokens[index * size : (index + 1) * size]))
            hashes.append(parent)
