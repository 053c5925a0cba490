"""What one sequence will produce, decided up front: the simulator knows its answer before it "generates" it."""

from collections.abc import Sequence
from dataclasses import dataclass

from engine.sim.config import SimConfig
from engine.sim.tokens import synthetic_completion


@dataclass(frozen=True)
class GenerationPlan:
    prompt_tokens: tuple[str, ...]
    output_tokens: tuple[str, ...]
    finish_reason: str


def plan_generation(config: SimConfig, prompt_tokens: Sequence[str], max_tokens: int | None) -> GenerationPlan:
    """The completion is ``output_tokens`` long and ends with "stop", unless max_tokens or the room left in the
    context (vLLM's default max_tokens) cuts it shorter, which ends it with "length".

    The caller has checked that the prompt leaves room for at least one token.
    """
    limit = max_tokens if max_tokens is not None else config.max_model_len - len(prompt_tokens)
    length = min(config.output_tokens, limit)
    return GenerationPlan(
        prompt_tokens=tuple(prompt_tokens),
        output_tokens=synthetic_completion(prompt_tokens, length),
        finish_reason="length" if limit < config.output_tokens else "stop",
    )
