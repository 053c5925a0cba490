"""What the engine queues and runs: generation sequences, and slot holders for requests that use no KV cache."""

import asyncio
from enum import Enum

from engine.sim.planning import GenerationPlan


class Status(Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"
    ABORTED = "aborted"


class Sequence:
    """One completion choice as the engine sees it.

    Its answer is decided up front (``plan``), so the engine only decides when each token is sampled:
    ``num_output`` counts the output tokens sampled so far and never goes back, not even when a preemption makes
    the engine recompute the sequence. The sequence's tokens so far are ``tokens[:num_tokens]``; the engine has
    the KV entries of the first ``num_computed`` of them, in ``blocks``.
    """

    __slots__ = (
        "arrival",
        "block_hashes",
        "blocks",
        "error",
        "last_token_at",
        "num_cached_blocks",
        "num_cached_tokens",
        "num_computed",
        "num_output",
        "num_preemptions",
        "num_prompt_tokens",
        "plan",
        "queued_at",
        "status",
        "tokens",
        "waiter",
    )

    def __init__(self, plan: GenerationPlan, arrival: float, queued_at: float) -> None:
        self.plan = plan
        self.tokens = plan.prompt_tokens + plan.output_tokens
        self.num_prompt_tokens = len(plan.prompt_tokens)
        self.num_output = 0
        self.num_computed = 0
        self.blocks: list[int] = []
        # Chained hashes of the sequence's full blocks, filled as far as someone needed them; they stay valid
        # across preemptions because the tokens never change.
        self.block_hashes: list[int] = []
        # How many of ``blocks`` are in the prefix cache (taken from it, or registered once their tokens were
        # scheduled).
        self.num_cached_blocks = 0
        self.num_cached_tokens = 0
        self.num_preemptions = 0
        self.status = Status.WAITING
        self.arrival = arrival
        self.queued_at = queued_at
        self.last_token_at = arrival
        self.waiter: asyncio.Future[None] | None = None
        # Why the engine gave up on the sequence, for its consumer to raise.
        self.error: Exception | None = None

    @property
    def num_tokens(self) -> int:
        return self.num_prompt_tokens + self.num_output

    @property
    def is_complete(self) -> bool:
        return self.num_output == len(self.plan.output_tokens)


class SlotHolder:
    """A request that occupies a batching slot while it runs but no KV blocks (speech synthesis).

    It queues with the sequences, first come first served; ``waiter`` resolves when it is admitted.
    """

    __slots__ = ("queued_at", "status", "waiter")

    def __init__(self, queued_at: float, waiter: asyncio.Future[None]) -> None:
        self.queued_at = queued_at
        self.status = Status.WAITING
        self.waiter = waiter
