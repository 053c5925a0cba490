from engine.sim.kv_cache import KvCache
from engine.sim.planning import GenerationPlan
from engine.sim.sequence import Sequence


def sequence_of(prompt: str, output: str = "xyz") -> Sequence:
    """A sequence whose tokens are the characters of ``prompt`` then of ``output``."""
    return Sequence(GenerationPlan(tuple(prompt), tuple(output), "stop"), arrival=0.0, queued_at=0.0)


def computed(cache: KvCache, sequence: Sequence) -> Sequence:
    """The sequence with its whole prompt allocated and registered, as a finished prefill leaves it."""
    assert cache.allocate(sequence, sequence.num_tokens)
    cache.cache_full_blocks(sequence, sequence.num_tokens)
    return sequence


def test_blocks_are_allocated_as_the_sequence_grows() -> None:
    cache = KvCache(num_blocks=10, block_size=4, enable_prefix_caching=True)
    sequence = sequence_of("abc")

    assert cache.allocate(sequence, 3)
    assert (len(sequence.blocks), cache.usage) == (1, 0.1)
    assert cache.allocate(sequence, 4)  # the fourth token still fits the first block
    assert len(sequence.blocks) == 1
    assert cache.allocate(sequence, 5)
    assert (len(sequence.blocks), cache.usage) == (2, 0.2)

    cache.free(sequence)
    assert (sequence.blocks, cache.usage) == ([], 0.0)


def test_allocation_that_does_not_fit_changes_nothing() -> None:
    cache = KvCache(num_blocks=2, block_size=4, enable_prefix_caching=True)
    sequence = sequence_of("abcdefghi")

    assert not cache.allocate(sequence, 9)  # 3 blocks
    assert (sequence.blocks, cache.pool.num_free) == ([], 2)


def test_a_prompt_reuses_the_cached_full_blocks_of_a_shared_prefix() -> None:
    cache = KvCache(num_blocks=10, block_size=4, enable_prefix_caching=True)
    earlier = computed(cache, sequence_of("abcdefghij"))  # blocks abcd, efgh and a partial ij

    hits = cache.cached_prefix(sequence_of("abcdefghXYZ"))
    assert hits == earlier.blocks[:2]
    assert cache.cached_prefix(sequence_of("abcdXfghij")) == earlier.blocks[:1]  # the chain breaks at efgh
    assert cache.cached_prefix(sequence_of("Xbcdefghij")) == []  # same second block, different parent


def test_the_last_prompt_token_is_always_computed() -> None:
    cache = KvCache(num_blocks=10, block_size=4, enable_prefix_caching=True)
    earlier = computed(cache, sequence_of("abcdefgh"))

    # The same 8 tokens: both blocks are cached, but the second holds the last token, so only the first is used.
    assert cache.cached_prefix(sequence_of("abcdefgh")) == earlier.blocks[:1]
    assert cache.cached_prefix(sequence_of("abcdefghi")) == earlier.blocks


def test_partial_blocks_are_never_cached() -> None:
    cache = KvCache(num_blocks=10, block_size=4, enable_prefix_caching=True)
    computed(cache, sequence_of("abcdef"))

    assert len(cache.cached_prefix(sequence_of("abcdefgh" + "ijkl"))) == 1


def test_blocks_stay_cached_after_their_sequence_is_freed_and_count_as_free() -> None:
    cache = KvCache(num_blocks=4, block_size=4, enable_prefix_caching=True)
    earlier = computed(cache, sequence_of("abcdefgh"))
    cache.free(earlier)
    later = sequence_of("abcdefghij")

    hits = cache.cached_prefix(later)
    assert (len(hits), cache.usage) == (2, 0.0)
    assert cache.allocate(later, 10, hits)
    assert later.blocks[:2] == hits
    assert (len(later.blocks), cache.usage) == (3, 0.75)


def test_reusing_free_cached_blocks_needs_them_counted_against_the_free_ones() -> None:
    cache = KvCache(num_blocks=3, block_size=4, enable_prefix_caching=True)
    earlier = computed(cache, sequence_of("abcdefgh"))
    cache.free(earlier)
    holder = sequence_of("x")
    assert cache.allocate(holder, 1)  # takes the one never-used block
    later = sequence_of("abcdefghijkl")  # 2 cached blocks (both free) + 1 new: 3 > 2 free

    assert not cache.allocate(later, 12, cache.cached_prefix(later))
    assert (later.blocks, cache.pool.num_free) == ([], 2)


def test_a_sequence_frees_its_tail_first_so_a_shared_prefix_is_evicted_last() -> None:
    cache = KvCache(num_blocks=3, block_size=2, enable_prefix_caching=True)
    sequence = computed(cache, sequence_of("abcdef"))
    first, second, third = sequence.blocks
    cache.free(sequence)

    assert cache.pool.free_queue() == [third, second, first]


def test_without_prefix_caching_nothing_is_found() -> None:
    cache = KvCache(num_blocks=10, block_size=4, enable_prefix_caching=False)
    computed(cache, sequence_of("abcdefghij"))

    assert cache.cached_prefix(sequence_of("abcdefghij")) == []
