import math
import random
from collections import Counter
from collections.abc import Callable

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from engine.spec.sampling import Acceptance, greedy_accept, probabilities, speculative_accept
from tests.engine.spec.chi_square import assert_distributed_as, detectable


def normalised(rows: list[list[float]]) -> torch.Tensor:
    tensor = torch.tensor(rows, dtype=torch.float32)
    return tensor / tensor.sum(dim=-1, keepdim=True)


# Target rows for three drafted positions and the bonus position over six tokens, with zeros in each.
P = normalised(
    [
        [0.30, 0.05, 0.25, 0.00, 0.30, 0.10],
        [0.10, 0.40, 0.00, 0.20, 0.05, 0.25],
        [0.00, 0.15, 0.35, 0.35, 0.10, 0.05],
        [0.20, 0.20, 0.20, 0.00, 0.20, 0.20],
    ]
)
# Drafts that disagree with the target: mass where p is small or zero, none on some tokens p likes.
Q_FAR = normalised(
    [
        [0.00, 0.60, 0.05, 0.30, 0.05, 0.00],
        [0.50, 0.05, 0.40, 0.00, 0.05, 0.00],
        [0.30, 0.00, 0.10, 0.50, 0.10, 0.00],
    ]
)
TRIALS = 3000


def per_position_samples(
    draft_probs: torch.Tensor | None, draw_drafts: Callable[[int], list[int]], seed: int
) -> list[tuple[Counter[int], int]]:
    """Run TRIALS independent steps; per position i, the emitted tokens of the steps that reached it and their count.

    With position-independent target rows, a step that reaches position i emits a token distributed as P[i]
    whatever happened before, which is the whole of the speculative sampling guarantee.
    """
    generator = torch.Generator().manual_seed(seed)
    samples: list[tuple[Counter[int], int]] = [(Counter(), 0) for _ in range(len(P))]
    for trial in range(TRIALS):
        result = speculative_accept(draw_drafts(trial), draft_probs, P, generator)
        for position, token in enumerate(result.tokens):
            counts, n = samples[position]
            counts[token] += 1
            samples[position] = (counts, n + 1)
    return samples


def drafts_sampled_from(q: torch.Tensor, seed: int) -> Callable[[int], list[int]]:
    drafts = torch.multinomial(q, TRIALS, replacement=True, generator=torch.Generator().manual_seed(seed)).T.tolist()
    return lambda trial: drafts[trial]


def test_far_draft_keeps_the_target_distribution_at_every_position() -> None:
    samples = per_position_samples(Q_FAR, drafts_sampled_from(Q_FAR, seed=1), seed=2)

    for position, (counts, n) in enumerate(samples):
        if n >= 100:
            assert_distributed_as(counts, P[position], n)
    assert samples[1][1] >= 100, "the draft was rejected too often to test a second position"
    # The test has the power to see the classic mistakes at the first position: keeping every draft (emitting q),
    # or resampling from p instead of the residual after a rejection.
    kept = torch.minimum(P[0], Q_FAR[0])
    assert detectable(Q_FAR[0], P[0], TRIALS)
    assert detectable(kept + (1 - kept.sum()) * P[0], P[0], TRIALS)


def test_draft_equal_to_the_target_is_always_kept() -> None:
    samples = per_position_samples(P[:3], drafts_sampled_from(P[:3], seed=3), seed=4)

    # Every draft survives (u * q < p with p == q), so every step reaches the bonus position.
    assert [n for _, n in samples] == [TRIALS] * len(P)
    for position, (counts, n) in enumerate(samples):
        assert_distributed_as(counts, P[position], n)


def test_deterministic_draft_keeps_the_target_distribution() -> None:
    # Prompt lookup proposes the same tokens whatever the randomness: q is one-hot. The third drafted token has
    # p = 0, so it is never emitted and the bonus position is never reached.
    samples = per_position_samples(None, lambda _trial: [0, 1, 0], seed=5)

    for position in range(3):
        counts, n = samples[position]
        assert n >= 100
        assert_distributed_as(counts, P[position], n)
    assert samples[3][1] == 0
    # Keeping the one-hot draft unconditionally would be caught.
    assert detectable(torch.eye(6)[0], P[0], TRIALS)


def test_drafts_outside_the_target_support_are_always_rejected() -> None:
    generator = torch.Generator().manual_seed(6)
    for _ in range(200):
        result = speculative_accept([3], None, P[:2], generator)
        assert result.accepted == 0
        assert result.tokens[0] != 3


def markov_exact(transition: torch.Tensor, start: int, length: int) -> dict[tuple[int, ...], float]:
    sequences: dict[tuple[int, ...], float] = {(): 1.0}
    for _ in range(length):
        sequences = {
            (*seq, token): prob * float(transition[seq[-1] if seq else start, token])
            for seq, prob in sequences.items()
            for token in range(transition.shape[0])
        }
    return sequences


def test_decode_loop_with_context_dependent_target_samples_the_target_sequence_distribution() -> None:
    # A first-order Markov chain plays the model: the next-token distribution depends on the previous token, so
    # each verify row is conditioned on the drafted prefix, as in the real loop. Drafts come from another chain.
    target = normalised([[0.6, 0.3, 0.1], [0.1, 0.2, 0.7], [0.45, 0.05, 0.5]])
    draft = normalised([[0.1, 0.2, 0.7], [0.7, 0.2, 0.1], [0.3, 0.4, 0.3]])
    start, length, k, trials = 0, 3, 2, 4000
    draws = random.Random(7)
    generator = torch.Generator().manual_seed(8)

    outcomes: Counter[tuple[int, ...]] = Counter()
    for _ in range(trials):
        sequence: list[int] = []
        while len(sequence) < length:
            previous = sequence[-1] if sequence else start
            drafted: list[int] = []
            for _ in range(k):
                row = draft[drafted[-1] if drafted else previous].tolist()
                drafted.append(draws.choices(range(3), weights=row)[0])
            contexts = torch.tensor([previous, *drafted])
            result = speculative_accept(drafted, draft[contexts[:k]], target[contexts], generator)
            sequence.extend(result.tokens)
        outcomes[tuple(sequence[:length])] += 1

    exact = markov_exact(target, start, length)
    cells = sorted(exact)
    indexed = Counter({cells.index(seq): n for seq, n in outcomes.items()})
    assert_distributed_as(indexed, torch.tensor([exact[seq] for seq in cells]), trials)


def test_a_seeded_generator_makes_the_step_reproducible() -> None:
    def run(seed: int) -> list[Acceptance]:
        generator = torch.Generator().manual_seed(seed)
        return [speculative_accept([1, 0, 3], Q_FAR, P, generator) for _ in range(20)]

    assert run(9) == run(9)
    assert run(9) != run(10)


def test_a_whole_draft_kept_ends_with_a_bonus_token() -> None:
    # One-hot target rows: every drafted token has p = 1 and the bonus is certain.
    target = torch.eye(4)[[2, 0, 3]]

    assert speculative_accept([2, 0], None, target) == Acceptance(2, [2, 0, 3])
    assert speculative_accept(torch.tensor([2, 0]), target[:2], target) == Acceptance(2, [2, 0, 3])


def test_an_empty_draft_samples_the_first_row() -> None:
    assert speculative_accept([], None, torch.eye(5)[[4]]) == Acceptance(0, [4])


def test_a_residual_with_no_mass_falls_back_to_the_target_row() -> None:
    # Exact arithmetic never gets here; rounding can, and so can a target row that sums a little under 1, as here:
    # q is above p at the drafted token and nowhere below it, so max(0, p - q) is all zeros.
    q = torch.tensor([[0.5, 0.5]])
    p = torch.tensor([[0.4, 0.5], [1.0, 0.0]])
    generator = torch.Generator().manual_seed(0)

    results = [speculative_accept([0], q, p, generator) for _ in range(200)]
    rejected = Counter(r.tokens[0] for r in results if r.accepted == 0)
    assert set(rejected) == {0, 1}  # sampled from p[0], so within the vocabulary
    assert all(r.tokens == [0, 0] for r in results if r.accepted == 1)


@pytest.mark.parametrize(
    ("draft", "draft_probs", "target_probs", "message"),
    [
        ([1, 2], None, torch.full((2, 4), 0.25), r"target_probs must be shaped \(3, vocab\).*\(2, 4\)"),
        ([1], torch.full((2, 4), 0.25), torch.full((2, 4), 0.25), r"draft_probs must be shaped \(1, vocab\)"),
        ([1], torch.full((1, 5), 0.2), torch.full((2, 4), 0.25), "share the vocabulary, got 5 and 4"),
        ([1], None, torch.full((2, 2, 4), 0.25), "target_probs must be shaped"),
    ],
)
def test_speculative_accept_checks_shapes(
    draft: list[int], draft_probs: torch.Tensor | None, target_probs: torch.Tensor, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        speculative_accept(draft, draft_probs, target_probs)


# --- greedy ---------------------------------------------------------------------------------------------------


def one_hot_logits(tokens: list[int], vocab: int = 6) -> torch.Tensor:
    return torch.eye(vocab)[tokens] * 5


@pytest.mark.parametrize(
    ("draft", "argmaxes", "expected"),
    [
        ([1, 2, 3], [1, 2, 3, 4], Acceptance(3, [1, 2, 3, 4])),  # all kept, bonus from the last row
        ([1, 2, 3], [1, 5, 3, 4], Acceptance(1, [1, 5])),  # the target's choice replaces the first miss
        ([1, 2, 3], [0, 2, 3, 4], Acceptance(0, [0])),  # a miss at once is a plain greedy step
        ([], [4], Acceptance(0, [4])),
    ],
)
def test_greedy_accept(draft: list[int], argmaxes: list[int], expected: Acceptance) -> None:
    assert greedy_accept(draft, one_hot_logits(argmaxes)) == expected
    assert greedy_accept(torch.tensor(draft, dtype=torch.long), one_hot_logits(argmaxes)) == expected


def test_greedy_ties_go_to_the_lowest_token_id_as_in_the_greedy_loop() -> None:
    logits = torch.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], dtype=torch.bfloat16)

    assert greedy_accept([2], logits) == Acceptance(0, [1])
    assert greedy_accept([1], logits) == Acceptance(1, [1, 0])


@given(
    draft=st.lists(st.integers(0, 3), max_size=5),
    seed=st.integers(0, 2**16),
)
def test_greedy_accept_keeps_exactly_the_prefix_the_target_agrees_with(draft: list[int], seed: int) -> None:
    logits = torch.randn(len(draft) + 1, 4, generator=torch.Generator().manual_seed(seed))
    choices = logits.argmax(dim=-1).tolist()

    result = greedy_accept(draft, logits)
    n = result.accepted
    assert draft[:n] == choices[:n]
    assert n == len(draft) or draft[n] != choices[n]
    assert result.tokens == [*draft[:n], choices[n]]


def test_greedy_accept_checks_the_rows() -> None:
    with pytest.raises(ValueError, match=r"target_logits must be shaped \(3, vocab\)"):
        greedy_accept([1, 2], torch.zeros(2, 4))


# --- temperature and top-p ------------------------------------------------------------------------------------


def test_temperature_scales_the_logits() -> None:
    logits = torch.tensor([[1.0, 2.0, 4.0]])

    assert torch.allclose(probabilities(logits, 0.5), torch.softmax(logits * 2, dim=-1))
    assert torch.allclose(probabilities(logits, 1.0), torch.softmax(logits, dim=-1))


def probs_logits(probs: list[float]) -> torch.Tensor:
    return torch.tensor(probs).log()


@pytest.mark.parametrize(
    ("top_p", "expected"),
    [
        (1.0, [0.5, 0.3, 0.15, 0.05]),
        (0.75, [0.625, 0.375, 0.0, 0.0]),  # 0.5 < 0.75 <= 0.8: two tokens reach it
        (0.81, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0]),
        (0.4, [1.0, 0.0, 0.0, 0.0]),  # the top token alone reaches it
        (1e-9, [1.0, 0.0, 0.0, 0.0]),  # and is always kept
    ],
)
def test_top_p_keeps_the_nucleus(top_p: float, expected: list[float]) -> None:
    got = probabilities(probs_logits([0.5, 0.3, 0.15, 0.05]), 1.0, top_p)

    assert got.tolist() == pytest.approx(expected, abs=1e-6)


def test_top_p_keeps_every_token_tied_with_the_one_that_reaches_it() -> None:
    got = probabilities(probs_logits([0.3, 0.4, 0.3]), 1.0, 0.5)

    assert got.tolist() == pytest.approx([0.3, 0.4, 0.3], abs=1e-6)


def test_top_p_nucleus_wider_than_the_probe_sorts_the_row() -> None:
    # 300 distinct, slowly falling probabilities: half the mass needs far more than 64 tokens.
    weights = torch.linspace(2.0, 1.0, 300)
    probs = weights / weights.sum()
    cumulative = probs.cumsum(dim=0)
    nucleus = int((cumulative < 0.5).sum()) + 1

    got = probabilities(probs.log(), 1.0, 0.5)
    assert int((got > 0).sum()) == nucleus > 64
    assert torch.allclose(got[:nucleus], probs[:nucleus] / probs[:nucleus].sum())


def test_top_p_rows_are_independent_when_one_needs_the_wide_path() -> None:
    peaked = torch.tensor([8.0, 1.0, 0.0] + [-5.0] * 197)
    flat = torch.linspace(2.0, 1.0, 200).log()
    both = torch.stack([peaked, flat])

    got = probabilities(both, 0.8, 0.9)
    assert torch.allclose(got[0], probabilities(peaked, 0.8, 0.9))
    assert torch.allclose(got[1], probabilities(flat, 0.8, 0.9))


def test_probabilities_from_bf16_logits_are_fp32_and_sum_to_one() -> None:
    logits = torch.randn(3, 1000, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16) * 3

    got = probabilities(logits, 0.7, 0.95)
    assert got.dtype == torch.float32
    assert torch.allclose(got.sum(dim=-1), torch.ones(3))


@pytest.mark.parametrize(
    ("temperature", "top_p", "message"),
    [
        (0.0, 1.0, "temperature"),
        (-1.0, 1.0, "temperature"),
        (math.inf, 1.0, "temperature"),
        (math.nan, 1.0, "temperature"),
        (1.0, 0.0, "top_p"),
        (1.0, 1.5, "top_p"),
        (1.0, math.nan, "top_p"),
    ],
)
def test_probabilities_refuses_bad_settings(temperature: float, top_p: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        probabilities(torch.zeros(3), temperature, top_p)
