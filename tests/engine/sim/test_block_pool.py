from engine.sim.block_pool import BlockPool


def test_a_new_pool_is_all_free_and_hands_out_blocks_in_order() -> None:
    pool = BlockPool(4)

    assert (pool.num_free, pool.usage) == (4, 0.0)
    assert pool.allocate(3) == [0, 1, 2]
    assert (pool.num_free, pool.usage, pool.free_queue()) == (1, 0.75, [3])


def test_freed_cached_blocks_are_evicted_least_recently_freed_first() -> None:
    pool = BlockPool(4)
    first, second = pool.allocate(2), pool.allocate(2)
    for block, block_hash in zip([*first, *second], [10, 11, 20, 21], strict=True):
        pool.cache(block, block_hash)
    pool.free(reversed(second))  # a sequence frees its tail first
    pool.free(reversed(first))

    # Cached blocks count as free (evictable), in the order they were freed.
    assert (pool.num_free, pool.usage) == (4, 0.0)
    assert pool.free_queue() == [3, 2, 1, 0]
    assert pool.allocate(1) == [3]
    assert pool.cached_block(21) is None  # evicted to make room
    assert (pool.cached_block(20), pool.cached_block(10), pool.cached_block(11)) == (2, 0, 1)


def test_a_hit_takes_a_cached_block_out_of_the_free_queue_until_it_is_freed_again() -> None:
    pool = BlockPool(3)
    (block,) = pool.allocate(1)
    pool.cache(block, 7)
    pool.free([block])

    pool.touch([block])
    assert (pool.num_free, pool.free_queue()) == (2, [1, 2])
    pool.touch([block])  # a second sequence shares it
    pool.free([block])
    assert pool.num_free == 2  # still held by one
    pool.free([block])
    assert pool.free_queue() == [1, 2, block]  # back as the most recently freed
    assert pool.cached_block(7) == block


def test_freed_blocks_nobody_can_find_are_reused_before_cached_ones() -> None:
    pool = BlockPool(4)
    cached, anonymous = pool.allocate(2), pool.allocate(2)
    pool.cache(cached[0], 1)
    pool.cache(cached[1], 2)
    pool.free(reversed(cached))
    pool.free(anonymous)

    assert pool.free_queue() == [2, 3, 1, 0]


def test_a_second_block_with_known_content_stays_anonymous() -> None:
    pool = BlockPool(2)
    first, second = pool.allocate(2)
    pool.cache(first, 5)
    pool.cache(second, 5)  # computed by two sequences at once
    pool.free([first, second])

    assert pool.cached_block(5) == first
    assert pool.free_queue() == [second, first]
