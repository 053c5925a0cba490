from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.spec.drafters import DraftState
from engine.spec.drafters.lookup import LookupDrafter, LookupIndex, propose


def reference_propose(tokens: Sequence[int], max_tokens: int, ngram_sizes: Sequence[int]) -> list[int]:
    """The module docstring's semantics, written as plainly as possible: every candidate, newest wins."""
    length = len(tokens)
    for n in ngram_sizes:
        if length <= n:
            continue
        tail = list(tokens[length - n :])
        starts = [i for i in range(length - n) if list(tokens[i : i + n]) == tail]
        if starts:
            follow = max(starts) + n
            return list(tokens[follow : min(follow + max_tokens, length)])
    return []


# A small alphabet makes repeats, and so matches, common; a large one exercises the no-match path.
contexts = st.one_of(
    st.lists(st.integers(0, 2), max_size=40),
    st.lists(st.integers(0, 5), max_size=80),
    st.lists(st.integers(0, 50_000), max_size=30),
)
sizes = st.lists(st.integers(1, 4), min_size=1, max_size=3)


@given(tokens=contexts, max_tokens=st.integers(0, 6), ngram_sizes=sizes)
def test_propose_matches_the_reference(tokens: list[int], max_tokens: int, ngram_sizes: list[int]) -> None:
    assert propose(tokens, max_tokens, ngram_sizes) == reference_propose(tokens, max_tokens, ngram_sizes)


@settings(max_examples=150)
@given(tokens=contexts, max_tokens=st.integers(0, 6), ngram_sizes=sizes, chunk=st.integers(1, 5))
def test_index_matches_the_reference_at_every_step(
    tokens: list[int], max_tokens: int, ngram_sizes: list[int], chunk: int
) -> None:
    # Grown in chunks, as a decode loop appends a step's accepted tokens, and checked after each.
    index = LookupIndex(ngram_sizes=ngram_sizes)
    for start in range(0, len(tokens), chunk):
        index.extend(tokens[start : start + chunk])
        seen = tokens[: start + chunk]
        assert index.tokens == seen
        assert index.propose(max_tokens) == reference_propose(seen, max_tokens, ngram_sizes)


def lookup_state(max_tokens: int) -> DraftState:
    # Lookup never touches the model, so the state needs no runner.
    return DraftState(runner=None, position=0, max_tokens=max_tokens)  # type: ignore[arg-type]


@settings(max_examples=50)
@given(tokens=contexts, chunk=st.integers(1, 5))
def test_drafter_follows_a_growing_context(tokens: list[int], chunk: int) -> None:
    drafter = LookupDrafter()
    for end in range(chunk, len(tokens) + chunk, chunk):
        draft = drafter.propose(tokens[:end], lookup_state(4))
        assert (draft.tokens, draft.exit_layer, draft.hidden) == (reference_propose(tokens[:end], 4, (3, 2)), 0, None)


def test_drafter_rebuilds_for_a_context_that_does_not_extend_the_last() -> None:
    drafter = LookupDrafter(ngram_sizes=(2,))
    assert drafter.propose([1, 2, 3, 1, 2], lookup_state(2)).tokens == [3, 1]

    # Shorter than what the drafter has seen, then as long but different at the last token seen.
    assert drafter.propose([5, 6, 5], lookup_state(2)).tokens == []
    assert drafter.propose([5, 6, 5, 6], lookup_state(2)).tokens == [5, 6]
    assert drafter.propose([9, 8, 7, 9, 8], lookup_state(2)).tokens == [7, 9]


def test_index_built_from_a_prompt_equals_one_grown_token_by_token() -> None:
    prompt = [5, 1, 2, 3, 9, 1, 2, 3, 7, 1, 2]
    grown = LookupIndex()
    grown.extend(prompt)

    assert LookupIndex(prompt).propose(4) == grown.propose(4) == [3, 7, 1, 2]
    assert len(grown) == len(prompt)


@pytest.mark.parametrize(
    ("tokens", "max_tokens", "expected"),
    [
        # The most recent of two earlier occurrences of "1 2 3" wins: it is followed by 8, not 4.
        ([1, 2, 3, 4, 5, 1, 2, 3, 8, 9, 1, 2, 3], 2, [8, 9]),
        # The proposal stops at the end of the context, short of max_tokens.
        ([1, 2, 3, 4, 1, 2, 3], 5, [4, 1, 2, 3]),
        # A candidate may overlap the tail; in a run only one token follows the newest candidate.
        ([7, 7, 7, 7], 4, [7]),
        ([1, 2, 1, 2, 1], 3, [2, 1]),
        # No earlier "9 1 2", so the bigram "1 2" decides, again by its most recent occurrence.
        ([1, 2, 5, 6, 1, 2, 4, 9, 1, 2], 2, [4, 9]),
        # The trigram matches, so a more recent bigram match (followed by 0) does not count.
        ([3, 1, 2, 8, 0, 1, 2, 0, 3, 1, 2], 1, [8]),
        # The tail alone is never its own match.
        ([1, 2, 3], 3, []),
        ([1, 2, 3, 4, 5, 6], 3, []),
        # Too short for any n-gram with a follower.
        ([], 3, []),
        ([4], 3, []),
        ([4, 4], 3, []),
        # The shortest context with a match: the bigram "4 4" at 0 is followed by the last token.
        ([4, 4, 4], 3, [4]),
        ([1, 2, 3, 1, 2, 3], 0, []),
    ],
)
def test_documented_cases(tokens: list[int], max_tokens: int, expected: list[int]) -> None:
    assert propose(tokens, max_tokens) == expected
    assert LookupIndex(tokens).propose(max_tokens) == expected


def test_sizes_are_tried_in_the_order_given() -> None:
    tokens = [3, 1, 2, 8, 0, 1, 2, 0, 3, 1, 2]

    assert propose(tokens, 1, (2, 3)) == [0]
    assert LookupIndex(tokens, (2, 3)).propose(1) == [0]


def test_the_proposal_is_a_copy_the_caller_may_keep() -> None:
    index = LookupIndex([1, 2, 3, 1, 2])
    draft = index.propose(2)
    index.append(3)

    assert draft == [3, 1]
    assert index.propose(2) == [1, 2]


def test_any_sequence_of_ints_is_a_context() -> None:
    assert propose((1, 2, 3, 4, 1, 2, 3), 1) == [4]
    assert propose(range(3), 1) == []


@pytest.mark.parametrize("ngram_sizes", [(), (0,), (3, -1), (True,), (2.0,)])
def test_invalid_ngram_sizes_are_refused(ngram_sizes: tuple[object, ...]) -> None:
    with pytest.raises(ValueError, match="ngram_sizes"):
        propose([1, 2, 3], 1, ngram_sizes)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ngram_sizes"):
        LookupIndex(ngram_sizes=ngram_sizes)  # type: ignore[arg-type]


def test_negative_max_tokens_is_refused() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        propose([1, 2, 3], -1)
    with pytest.raises(ValueError, match="max_tokens"):
        LookupIndex([1, 2, 3]).propose(-1)
