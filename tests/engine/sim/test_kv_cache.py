import pytest

from engine.sim.kv_cache import KvCache


@pytest.mark.parametrize(
    ("num_tokens", "expected_blocks"),
    [(0, 0), (1, 1), (16, 1), (17, 2), (160, 10)],  # ceil(tokens / 16)
)
def test_blocks_for_rounds_up_to_whole_blocks(num_tokens: int, expected_blocks: int) -> None:
    assert KvCache(num_blocks=100, block_size=16).blocks_for(num_tokens) == expected_blocks


def test_sequence_holds_prompt_blocks_and_grows_while_decoding() -> None:
    cache = KvCache(num_blocks=10, block_size=4)
    allocation = cache.allocate(["t"] * 3, final_length=9)

    assert cache.held_blocks == 1  # three prompt tokens fit one block
    cache.append_token(allocation)  # fourth token still fits
    assert cache.held_blocks == 1
    cache.append_token(allocation)  # fifth token opens a second block
    assert (cache.held_blocks, cache.usage) == (2, 0.2)
    assert allocation.cached_tokens == 0

    cache.free(allocation)
    assert (cache.held_blocks, cache.usage) == (0, 0.0)


def test_admission_reserves_blocks_up_to_the_final_length() -> None:
    cache = KvCache(num_blocks=4, block_size=4)
    cache.allocate(["t"], final_length=12)  # holds 1 block now, but 3 are promised

    assert cache.held_blocks == 1
    assert cache.can_allocate(4)
    assert not cache.can_allocate(5)  # would need 2 blocks; only 1 is unpromised


def test_growing_past_the_reservation_is_a_bug_that_raises() -> None:
    cache = KvCache(num_blocks=4, block_size=2)
    allocation = cache.allocate(["t", "t"], final_length=2)

    with pytest.raises(ValueError, match="reserved"):
        cache.append_token(allocation)


def test_allocating_beyond_capacity_raises() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        KvCache(num_blocks=1, block_size=4).allocate([], final_length=5)
