"""The speculative loop: draft, verify, keep the accepted prefix and the bonus token, repeat.

Greedy acceptance makes the output the greedy loop's (:func:`engine.spec.greedy.greedy_generate`) token for token
in exact arithmetic; in floating point the multi-row verify pass may round differently from one-row steps, which in
fp32 has not been seen to matter and in bf16 can flip near-ties.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import torch

from engine.spec.drafters import Drafter, DraftState
from engine.spec.greedy import check_room, prefill
from engine.spec.runner import Runner
from engine.spec.sampling import GREEDY, AcceptanceRule
from engine.spec.verify import verify


@dataclass
class SpecStats:
    """Counters in vLLM's spec-decode terms: a *draft* is a step that proposed at least one token."""

    steps: int = 0
    drafts: int = 0
    draft_tokens: int = 0
    accepted_tokens: int = 0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted_tokens / self.draft_tokens if self.draft_tokens else 0.0


@dataclass(frozen=True)
class SpecResult:
    tokens: list[int]
    stats: SpecStats = field(default_factory=SpecStats)


class SpeculativeDecoder:
    """One sequence decoded step by step, for callers that stream: each :meth:`step` drafts, verifies and returns
    the tokens it added (the first step prefills the prompt and returns one token). The contract is the greedy
    loop's (:func:`engine.spec.greedy.greedy_generate`): at most ``max_new_tokens`` tokens, ending after the first
    ``eos`` token, which is included. Drafts are never asked to reach past ``max_new_tokens``, so the cache needs no
    more room than the greedy loop's. ``rule`` chooses tokens (greedy by default, or a sampling rule).

    The decoder owns ``runner``'s cache from the first step to the last; one runner serves one decoder at a time.
    Raises ``ValueError`` (from the constructor) for a prompt the cache cannot hold, and (from ``step``) when a
    drafter returns more tokens than it was allowed.
    """

    def __init__(
        self,
        runner: Runner,
        drafter: Drafter,
        prompt_ids: Sequence[int],
        max_new_tokens: int,
        eos: Collection[int] = (),
        max_draft: int = 4,
        rule: AcceptanceRule = GREEDY,
    ) -> None:
        check_room(runner, prompt_ids, max_new_tokens)
        self.stats = SpecStats()
        self._runner, self._drafter, self._rule = runner, drafter, rule
        self._eos, self._max_draft, self._max_new = eos, max_draft, max_new_tokens
        self._context = list(prompt_ids)
        self._prompt_length = len(prompt_ids)
        self.stopped_at_eos = False

    @property
    def generated(self) -> int:
        return len(self._context) - self._prompt_length

    @property
    def finished(self) -> bool:
        return self.stopped_at_eos or self.generated >= self._max_new

    @torch.inference_mode()
    def step(self) -> list[int]:
        """The tokens this step adds; ``[]`` once :attr:`finished`."""
        if self.finished:
            return []
        runner, context = self._runner, self._context
        if not self.generated:
            return self._append([prefill(runner, context, self._rule)])
        position = len(context) - 1
        budget = min(self._max_draft, self._max_new - self.generated - 1)
        draft = self._drafter.propose(context, DraftState(runner, position, budget))
        if len(draft.tokens) > budget:
            raise ValueError(f"drafter proposed {len(draft.tokens)} tokens, at most {budget} allowed")
        result = verify(runner, position, context[-1], draft, self._rule)
        self.stats.steps += 1
        self.stats.drafts += bool(draft.tokens)
        self.stats.draft_tokens += len(draft.tokens)
        self.stats.accepted_tokens += result.accepted
        return self._append(result.tokens)

    def _append(self, tokens: list[int]) -> list[int]:
        for count, token in enumerate(tokens, 1):
            if token in self._eos:
                self.stopped_at_eos = True
                tokens = tokens[:count]
                break
        self._context.extend(tokens)
        return tokens


def speculative_generate(
    runner: Runner,
    drafter: Drafter,
    prompt_ids: Sequence[int],
    max_new_tokens: int,
    eos: Collection[int] = (),
    max_draft: int = 4,
    rule: AcceptanceRule = GREEDY,
) -> SpecResult:
    """Every token of a :class:`SpeculativeDecoder` run to its end (see there for the contract)."""
    decoder = SpeculativeDecoder(runner, drafter, prompt_ids, max_new_tokens, eos, max_draft, rule)
    tokens: list[int] = []
    while not decoder.finished:
        tokens += decoder.step()
    return SpecResult(tokens, decoder.stats)
