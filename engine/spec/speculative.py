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
from engine.spec.verify import verify_greedy


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


def speculative_generate(
    runner: Runner,
    drafter: Drafter,
    prompt_ids: Sequence[int],
    max_new_tokens: int,
    eos: Collection[int] = (),
    max_draft: int = 4,
) -> SpecResult:
    """Up to ``max_new_tokens`` tokens after ``prompt_ids`` with the same contract as the greedy loop (stops after
    the first ``eos`` token, included), drafting at most ``max_draft`` tokens per step. Drafts are never asked to
    reach past ``max_new_tokens``, so the cache needs no more room than the greedy loop's.

    Raises ``ValueError`` when a drafter returns more tokens than it was allowed.
    """
    check_room(runner, prompt_ids, max_new_tokens)
    stats = SpecStats()
    if max_new_tokens == 0:
        return SpecResult([], stats)
    context = list(prompt_ids)
    with torch.inference_mode():
        pending = prefill(runner, context)
        context.append(pending)
        generated = 1
        while generated < max_new_tokens and pending not in eos:
            position = len(context) - 1
            budget = min(max_draft, max_new_tokens - generated - 1)
            draft = drafter.propose(context, DraftState(runner, position, budget))
            if len(draft.tokens) > budget:
                raise ValueError(f"drafter proposed {len(draft.tokens)} tokens, at most {budget} allowed")
            result = verify_greedy(runner, position, pending, draft)
            stats.steps += 1
            stats.drafts += bool(draft.tokens)
            stats.draft_tokens += len(draft.tokens)
            stats.accepted_tokens += result.accepted
            for token in result.tokens:
                context.append(token)
                generated += 1
                pending = token
                if token in eos:
                    break
    return SpecResult(context[len(prompt_ids) :], stats)
