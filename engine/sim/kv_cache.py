"""KV cache block accounting for the sequences a worker is running.

A sequence holds the blocks its tokens fill so far, and grows into new blocks as it decodes. Admission reserves
the blocks the sequence will need by its end, so a running sequence can always grow and the simulator never has
to preempt. Prompt tokens go through ``allocate`` so that a prefix cache can serve some of them from blocks that
are already filled: ``cached_tokens`` carries that count to the latency model and the prefix cache metrics.
"""

from collections.abc import Sequence


class KvAllocation:
    """The blocks of one running sequence; changed only by the KvCache that made it."""

    __slots__ = ("cached_tokens", "held_blocks", "num_tokens", "reserved_blocks")

    def __init__(self, num_tokens: int, held_blocks: int, reserved_blocks: int, cached_tokens: int) -> None:
        self.num_tokens = num_tokens
        self.held_blocks = held_blocks
        self.reserved_blocks = reserved_blocks
        self.cached_tokens = cached_tokens


class KvCache:
    def __init__(self, num_blocks: int, block_size: int) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._held_blocks = 0
        self._reserved_blocks = 0

    @property
    def held_blocks(self) -> int:
        return self._held_blocks

    @property
    def usage(self) -> float:
        """Fraction of blocks holding tokens of running sequences, as vLLM's kv_cache_usage_perc reports."""
        return self._held_blocks / self.num_blocks

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def can_allocate(self, final_length: int) -> bool:
        """Whether a sequence that will reach ``final_length`` tokens fits beside those already admitted."""
        return self._reserved_blocks + self.blocks_for(final_length) <= self.num_blocks

    def allocate(self, prompt_tokens: Sequence[str], final_length: int) -> KvAllocation:
        if not self.can_allocate(final_length):
            raise ValueError(f"a sequence of {final_length} tokens does not fit in the free KV blocks")
        # Without a prefix cache every prompt token is computed afresh.
        allocation = KvAllocation(
            num_tokens=len(prompt_tokens),
            held_blocks=self.blocks_for(len(prompt_tokens)),
            reserved_blocks=self.blocks_for(final_length),
            cached_tokens=0,
        )
        self._reserved_blocks += allocation.reserved_blocks
        self._held_blocks += allocation.held_blocks
        return allocation

    def append_token(self, allocation: KvAllocation) -> None:
        allocation.num_tokens += 1
        needed = self.blocks_for(allocation.num_tokens)
        if needed > allocation.reserved_blocks:
            raise ValueError(f"sequence grew past the {allocation.reserved_blocks} blocks reserved for it")
        self._held_blocks += needed - allocation.held_blocks
        allocation.held_blocks = needed

    def free(self, allocation: KvAllocation) -> None:
        self._held_blocks -= allocation.held_blocks
        self._reserved_blocks -= allocation.reserved_blocks
        allocation.held_blocks = 0
        allocation.reserved_blocks = 0
