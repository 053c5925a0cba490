"""The greedy loop: the baseline every speculative speedup is measured against, and its reference output."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch

from engine.spec.runner import Runner
from engine.spec.sampling import GREEDY, AcceptanceRule


def check_room(runner: Runner, prompt_ids: Sequence[int], max_new_tokens: int) -> None:
    """Raises ``ValueError`` for an empty prompt, a negative budget, or a sequence the cache cannot hold. The last
    generated token is never fed back, so ``len(prompt) + max_new_tokens - 1`` positions are needed."""
    if not prompt_ids:
        raise ValueError("empty prompt")
    if max_new_tokens < 0:
        raise ValueError(f"negative max_new_tokens {max_new_tokens}")
    needed = len(prompt_ids) + max_new_tokens - 1
    if needed > runner.cache.capacity:
        raise ValueError(f"{needed} positions do not fit the cache's {runner.cache.capacity}")


def prefill(runner: Runner, prompt_ids: Sequence[int], rule: AcceptanceRule = GREEDY) -> int:
    """Empties the cache, runs the prompt through every layer in one pass, and returns the next token as ``rule``
    chooses it (not yet in the cache: it sits at position ``len(prompt_ids)``). Only the last row goes through the
    LM head."""
    runner.cache.reset()
    hidden = runner.run_layers(runner.embed(prompt_ids), 0)
    return rule.first(runner.logits(hidden[-1:]))


def greedy_generate(
    runner: Runner, prompt_ids: Sequence[int], max_new_tokens: int, eos: Collection[int] = ()
) -> list[int]:
    """Up to ``max_new_tokens`` greedy tokens after ``prompt_ids``, one full forward step each; stops after the
    first token in ``eos``, which is included (as HF ``generate()`` does). Argmax ties go to the lowest id."""
    check_room(runner, prompt_ids, max_new_tokens)
    if max_new_tokens == 0:
        return []
    with torch.inference_mode():
        token = prefill(runner, prompt_ids)
        output = [token]
        position = len(prompt_ids)
        while len(output) < max_new_tokens and token not in eos:
            token = int(runner.forward([token], position)[0].argmax())
            position += 1
            output.append(token)
    return output
