"""The decoding modes ``tokenlabs engine bench`` compares, in one table that other drafters register into.

A mode is built once per benchmark from a :class:`ModeSetup` (the runner and the benchmark's options) into a
:data:`Generate` function that decodes one prompt. ``greedy`` is the baseline and always runs; ``lookup`` is the
speculative loop with prompt lookup. A drafter mode that needs more than the runner (early exit and hybrid need a
fitted exit head, ``ModeSetup.head``) registers a builder with :func:`register_mode` from its own module; the
builder raises :class:`ModeUnavailableError` when it cannot be built (no head given), and the benchmark then skips
the mode unless it was asked for by name.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.spec.drafters import Drafter
from engine.spec.drafters.early_exit import DEFAULT_MAX_TOKENS
from engine.spec.gate import Gate
from engine.spec.greedy import greedy_generate
from engine.spec.runner import Runner
from engine.spec.speculative import SpecStats, speculative_generate

GREEDY = "greedy"


@dataclass(frozen=True)
class ModeSetup:
    """What a mode builder gets: the runner every mode shares, the most tokens a step may draft, the path of a
    fitted exit-head artifact when one was given (``--head``), and for early exit its gate (None: the default), the
    most tokens it drafts per step and the acceptance floor below which a sequence stops drafting (0: never)."""

    runner: Runner
    max_draft: int = 4
    head: Path | None = None
    gate: Gate | None = None
    draft_len: int = DEFAULT_MAX_TOKENS
    acceptance_floor: float = 0.0


@dataclass(frozen=True)
class Generation:
    """One prompt's output; ``stats`` is None for the greedy loop, which drafts nothing."""

    tokens: list[int]
    stats: SpecStats | None = None


# (prompt ids, max new tokens, eos ids) -> the generation; the same contract as greedy_generate.
Generate = Callable[[Sequence[int], int, Collection[int]], Generation]
ModeBuilder = Callable[[ModeSetup], Generate]
# Makes a fresh drafter for each generation (drafters such as the lookup one keep per-sequence state).
DrafterFactory = Callable[[], Drafter]


class ModeUnavailableError(RuntimeError):
    """A registered mode that cannot be built with the given setup; the message says what is missing."""


def greedy_mode(setup: ModeSetup) -> Generate:
    runner = setup.runner

    def generate(prompt_ids: Sequence[int], max_new_tokens: int, eos: Collection[int]) -> Generation:
        return Generation(greedy_generate(runner, prompt_ids, max_new_tokens, eos))

    return generate


def drafter_mode(factory: Callable[[ModeSetup], DrafterFactory]) -> ModeBuilder:
    """A mode builder for the speculative loop with the drafters ``factory(setup)`` makes, one per generation,
    drafting at most ``setup.max_draft`` tokens per step. ``factory`` may raise :class:`ModeUnavailableError`."""

    def build(setup: ModeSetup) -> Generate:
        make_drafter = factory(setup)
        runner, max_draft = setup.runner, setup.max_draft

        def generate(prompt_ids: Sequence[int], max_new_tokens: int, eos: Collection[int]) -> Generation:
            result = speculative_generate(runner, make_drafter(), prompt_ids, max_new_tokens, eos, max_draft)
            return Generation(result.tokens, result.stats)

        return generate

    return build
