"""The block-hash prefix index: which endpoint is believed to hold how much of a prompt."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from epp.prefix import CHARS_PER_TOKEN, PrefixIndex, block_hashes

MODEL = "m"


def text(blocks: int, seed: str = "x", block_chars: int = 4) -> str:
    """``blocks`` distinct blocks of ``block_chars`` characters."""
    return "".join(f"{seed}{index:0{block_chars - len(seed)}d}" for index in range(blocks))


def test_only_full_blocks_are_hashed() -> None:
    assert block_hashes(MODEL, "", 4, 100) == ()
    assert block_hashes(MODEL, "abc", 4, 100) == ()  # a partial block is not cacheable
    assert len(block_hashes(MODEL, "abcd", 4, 100)) == 1
    assert len(block_hashes(MODEL, "abcdefg", 4, 100)) == 1
    assert len(block_hashes(MODEL, "abcdefgh", 4, 100)) == 2


def test_max_blocks_caps_the_count() -> None:
    assert len(block_hashes(MODEL, "a" * 400, 4, 7)) == 7
    assert block_hashes(MODEL, "a" * 400, 4, 7) == block_hashes(MODEL, "a" * 400, 4, 100)[:7]


def test_hashes_chain_the_whole_prefix() -> None:
    one = block_hashes(MODEL, "aaaabbbbcccc", 4, 100)
    other = block_hashes(MODEL, "aaaaXbbbcccc", 4, 100)
    assert one[0] == other[0]
    # Same third block, different second block: the chain makes every later hash differ.
    assert one[1] != other[1] and one[2] != other[2]
    # Equal blocks at different positions hash differently too.
    repeated = block_hashes(MODEL, "aaaaaaaa", 4, 100)
    assert repeated[0] != repeated[1]


def test_the_model_is_part_of_the_chain() -> None:
    prompt = text(5)
    assert set(block_hashes("a", prompt, 4, 100)).isdisjoint(block_hashes("b", prompt, 4, 100))
    index = PrefixIndex(block_chars=4, default_capacity_blocks=100)
    index.record("e:1", block_hashes("a", prompt, 4, 100), 100)
    assert index.matched_blocks(block_hashes("b", prompt, 4, 100), ["e:1"]) == {}


def test_matched_blocks_is_the_longest_held_prefix() -> None:
    index = PrefixIndex(block_chars=4, default_capacity_blocks=100)
    long = block_hashes(MODEL, text(10), 4, 100)
    index.record("a:1", long[:3], 100)
    index.record("b:1", long, 100)
    index.record("c:1", block_hashes(MODEL, text(10, seed="y"), 4, 100), 100)
    assert index.matched_blocks(long, ["a:1", "b:1", "c:1", "unknown:1"]) == {"a:1": 3, "b:1": 10}
    assert index.matched_blocks(long[:2], ["a:1", "b:1"]) == {"a:1": 2, "b:1": 2}
    assert index.matched_blocks((), ["a:1"]) == {}
    # A prompt sharing 4 blocks with the long one, then diverging.
    diverging = block_hashes(MODEL, text(10)[:16] + text(6, seed="z"), 4, 100)
    assert index.matched_blocks(diverging, ["a:1", "b:1"]) == {"a:1": 3, "b:1": 4}


def test_short_prefixes_are_evicted_last() -> None:
    index = PrefixIndex(block_chars=4, default_capacity_blocks=100)
    hashes = block_hashes(MODEL, text(8), 4, 100)
    # Recording more blocks than the capacity keeps the first ones: the prompt's own prefix survives.
    index.record("a:1", hashes, capacity_blocks=5)
    assert index.held_blocks("a:1") == 5
    assert index.matched_blocks(hashes, ["a:1"]) == {"a:1": 5}


def test_lru_eviction_keeps_matches_exact() -> None:
    index = PrefixIndex(block_chars=4, default_capacity_blocks=100)
    old = block_hashes(MODEL, text(6, seed="o"), 4, 100)
    new = block_hashes(MODEL, text(4, seed="n"), 4, 100)
    index.record("a:1", old, capacity_blocks=8)
    index.record("a:1", new, capacity_blocks=8)
    # 6 + 4 > 8: the two least recently used blocks go, and those are the old prompt's last two.
    assert index.held_blocks("a:1") == 8
    assert index.matched_blocks(old, ["a:1"]) == {"a:1": 4}
    assert index.matched_blocks(new, ["a:1"]) == {"a:1": 4}
    # Using the old prompt's held prefix again refreshes it: now the new prompt's blocks are the oldest, and two
    # more blocks evict the new prompt's last two.
    index.record("a:1", old[:4], capacity_blocks=8)
    index.record("a:1", block_hashes(MODEL, text(2, seed="q"), 4, 100), capacity_blocks=8)
    assert index.matched_blocks(old, ["a:1"]) == {"a:1": 4}
    assert index.matched_blocks(new, ["a:1"]) == {"a:1": 2}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(1, 12)), min_size=1, max_size=40),
    st.integers(1, 30),
)
def test_binary_search_agrees_with_a_scan_after_any_evictions(prompts: list[tuple[int, int]], capacity: int) -> None:
    # Prompts are prefixes of four base texts, so they share prefixes and evict each other in every order.
    index = PrefixIndex(block_chars=4, default_capacity_blocks=capacity)
    bases = [block_hashes(MODEL, text(12, seed=f"s{base}"), 4, 100) for base in range(4)]
    for base, length in prompts:
        index.record("a:1", bases[base][:length], capacity)
    held = index._held["a:1"]
    for hashes in bases:
        scanned = 0
        while scanned < len(hashes) and hashes[scanned] in held:
            scanned += 1
        assert index.matched_blocks(hashes, ["a:1"]).get("a:1", 0) == scanned


def test_capacity_follows_the_kv_cache() -> None:
    index = PrefixIndex(block_chars=64, default_capacity_blocks=31250)
    assert index.capacity_blocks(None) == 31250
    assert index.capacity_blocks(0) == 31250
    # 16 tokens/block * 1024 blocks = 16384 tokens ≈ 65536 characters = 1024 index blocks of 64 characters.
    assert CHARS_PER_TOKEN == 4
    assert index.capacity_blocks(16 * 1024) == 1024
    assert index.capacity_blocks(1) == 1  # never 0


def test_forget() -> None:
    index = PrefixIndex(block_chars=4, default_capacity_blocks=10)
    hashes = block_hashes(MODEL, text(3), 4, 100)
    index.record("a:1", hashes, 10)
    index.forget("a:1")
    index.forget("never:1")
    assert index.held_blocks("a:1") == 0
    assert index.matched_blocks(hashes, ["a:1"]) == {}
