"""A shared-prefix chat workload in the style of inference-perf's ``shared_prefix`` generator.

``groups`` system prompts of ``system_prompt_words`` words each; every request takes one group (uniformly, or
Zipf-skewed by ``zipf_s``) and one of that group's ``questions_per_group`` questions. Arrivals are Poisson at
``rate`` requests per second. Everything is drawn from a seeded RNG so every policy sees the same requests at the
same instants.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_WORDS = (
    "cluster", "gateway", "tenant", "quota", "stream", "token", "engine", "replica", "latency", "budget",
    "policy", "routing", "prefix", "memory", "tensor", "kernel", "batch", "window", "metric", "signal",
)  # fmt: skip


@dataclass(frozen=True)
class WorkloadShape:
    groups: int = 32
    questions_per_group: int = 32
    system_prompt_words: int = 1000
    question_words: int = 200
    max_tokens: int = 16
    zipf_s: float = 0.8


@dataclass(frozen=True, slots=True)
class Arrival:
    at_s: float  # offset from the start of the run
    group: int
    messages: tuple[dict[str, str], ...]
    max_tokens: int


def _text(rng: random.Random, words: int, tag: str) -> str:
    # A tag first makes every prompt unique from its first block on; the words fill it to length.
    return tag + " " + " ".join(rng.choice(_WORDS) for _ in range(words))


@dataclass(frozen=True)
class Workload:
    shape: WorkloadShape
    system_prompts: tuple[str, ...]
    questions: tuple[tuple[str, ...], ...]

    @classmethod
    def build(cls, shape: WorkloadShape, seed: int = 7) -> Workload:
        rng = random.Random(seed)
        systems = tuple(_text(rng, shape.system_prompt_words, f"system-{g}:") for g in range(shape.groups))
        questions = tuple(
            tuple(_text(rng, shape.question_words, f"question-{g}-{q}:") for q in range(shape.questions_per_group))
            for g in range(shape.groups)
        )
        return cls(shape, systems, questions)

    def arrivals(self, rate: float, duration_s: float, seed: int) -> list[Arrival]:
        rng = random.Random(seed)
        weights = [1.0 / (group + 1) ** self.shape.zipf_s for group in range(self.shape.groups)]
        schedule = []
        at = rng.expovariate(rate)
        while at < duration_s:
            group = rng.choices(range(self.shape.groups), weights)[0]
            question = rng.choice(self.questions[group])
            messages = (
                {"role": "system", "content": self.system_prompts[group]},
                {"role": "user", "content": question},
            )
            schedule.append(Arrival(at, group, messages, self.shape.max_tokens))
            at += rng.expovariate(rate)
        return schedule
