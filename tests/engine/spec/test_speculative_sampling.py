"""Speculative sampling wired through the decoder and the one verify path: above temperature 0 the sequences a
drafter helps produce are distributed exactly as plain sampling's, whatever it drafts and however it hands over
its hidden states. Checked against the exact joint distribution of three tokens computed from the model."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
import torch

from engine.spec.drafters import Draft, Drafter, DraftState
from engine.spec.greedy import greedy_generate
from engine.spec.runner import Runner
from engine.spec.sampling import GREEDY, SamplingRule, acceptance_rule, probabilities
from engine.spec.speculative import SpeculativeDecoder, speculative_generate
from tests.engine.spec.chi_square import assert_distributed_as
from tests.engine.spec.support import EarlyExitProbe, OracleDrafter

PROMPT = [11, 400, 23, 1800, 5, 64, 64, 901]
# On the tiny random model this leaves 3-4 tokens in each nucleus: a joint small enough to test exactly.
TEMPERATURE, TOP_P = 0.08, 0.9
LENGTH = 3
TRIALS = 1500


def exact_joint(runner: Runner, length: int) -> dict[tuple[int, ...], float]:
    """The probability of every ``length``-token continuation of PROMPT under plain sampling."""
    joint: dict[tuple[int, ...], float] = {(): 1.0}
    with torch.inference_mode():
        for _ in range(length):
            extended: dict[tuple[int, ...], float] = {}
            for prefix, mass in joint.items():
                runner.cache.reset()
                probs = probabilities(runner.forward([*PROMPT, *prefix], 0)[-1:], TEMPERATURE, TOP_P)[0]
                for token in probs.nonzero().flatten().tolist():
                    extended[(*prefix, token)] = mass * float(probs[token])
            joint = extended
    return joint


class NoDrafter:
    def propose(self, context_ids: object, state: DraftState) -> Draft:
        return Draft()


def drafters(runner: Runner) -> dict[str, Callable[[], Drafter]]:
    likely = greedy_generate(runner, PROMPT, LENGTH)
    return {
        "none": NoDrafter,
        "most likely": lambda: OracleDrafter(likely, len(PROMPT)),
        "always wrong": lambda: OracleDrafter(likely, len(PROMPT), always_wrong=True),
        "early exit hand-off": lambda: EarlyExitProbe(OracleDrafter(likely, len(PROMPT), corrupt=True), exit_layer=2),
    }


@pytest.mark.parametrize("name", ["none", "most likely", "always wrong", "early exit hand-off"])
def test_sequences_are_distributed_as_plain_sampling_whatever_is_drafted(runner: Runner, name: str) -> None:
    exact = exact_joint(runner, LENGTH)
    cells = sorted(exact)
    index = {sequence: i for i, sequence in enumerate(cells)}
    make_drafter = drafters(runner)[name]
    rule = SamplingRule(TEMPERATURE, TOP_P, seed=7)
    counts: Counter[int] = Counter()
    drafted = 0
    for _ in range(TRIALS):
        result = speculative_generate(runner, make_drafter(), PROMPT, LENGTH, max_draft=2, rule=rule)
        sequence = tuple(result.tokens)
        assert sequence in index, f"{sequence} has probability 0"
        counts[index[sequence]] += 1
        drafted += result.stats.draft_tokens
    assert_distributed_as(counts, torch.tensor([exact[cell] for cell in cells]), TRIALS)
    assert (drafted > 0) == (name != "none")


def test_a_seed_reproduces_a_sampled_sequence(runner: Runner) -> None:
    def sample(seed: int) -> list[int]:
        return speculative_generate(runner, NoDrafter(), PROMPT, 24, rule=SamplingRule(1.0, seed=seed)).tokens

    assert sample(3) == sample(3)
    assert sample(3) != sample(4)


def test_temperature_zero_is_the_greedy_rule() -> None:
    assert acceptance_rule(0.0) is GREEDY
    assert isinstance(acceptance_rule(0.7, 0.9, seed=1), SamplingRule)
    with pytest.raises(ValueError, match="temperature"):
        SamplingRule(-1.0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingRule(1.0, top_p=0.0)


def test_the_decoder_streams_the_same_tokens_step_by_step(runner: Runner) -> None:
    greedy = greedy_generate(runner, PROMPT, 40)
    decoder = SpeculativeDecoder(runner, OracleDrafter(greedy, len(PROMPT), corrupt=True), PROMPT, 40, max_draft=3)
    steps = []
    while not decoder.finished:
        steps.append(decoder.step())
    assert steps[0] == greedy[:1]
    assert [token for step in steps for token in step] == greedy
    assert all(1 <= len(step) <= 4 for step in steps)
    assert decoder.step() == []
    assert decoder.generated == 40 and not decoder.stopped_at_eos


def test_the_decoder_stops_after_eos_and_says_so(runner: Runner) -> None:
    greedy = greedy_generate(runner, PROMPT, 40)
    eos = greedy[10]
    decoder = SpeculativeDecoder(runner, OracleDrafter(greedy, len(PROMPT)), PROMPT, 40, eos={eos}, max_draft=4)
    tokens: list[int] = []
    while not decoder.finished:
        tokens += decoder.step()
    assert tokens == greedy[: greedy.index(eos) + 1]
    assert decoder.stopped_at_eos
