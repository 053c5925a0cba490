"""The engine's scheduling rules, one step at a time, as vLLM V1's scheduler applies them (FCFS policy).

A step first serves the running sequences, oldest first: each computes what it has not computed yet (the next
prompt chunk, or the token sampled last step) within the step's token budget, ``max_num_batched_tokens``. A
sequence that needs a new KV block when none is free preempts the most recently admitted running sequence, which
may be itself: its blocks are freed and it goes back to the head of the queue, to be recomputed (prompt and output
so far) when readmitted. Only in a step without preemptions are waiting requests admitted, first come first served
while a batching slot is free: a sequence when the KV blocks for its first chunk are free (after prefix cache hits),
and the head of the queue blocks those behind it, so a long prompt is never starved by short ones.

Everything here is synchronous and deterministic: ``plan_step`` decides a step and takes its blocks,
``finish_step`` applies it once the step's time has passed. Time and delivery are the caller's business.
"""

from collections import deque
from dataclasses import dataclass

from engine.sim.config import SimConfig
from engine.sim.kv_cache import KvCache
from engine.sim.sequence import Sequence, SlotHolder, Status


@dataclass(frozen=True, slots=True)
class StepPlan:
    chunks: tuple[tuple[Sequence, int], ...]
    """Each scheduled sequence and how many of its tokens the step computes."""
    num_decoding: int
    """Scheduled sequences that compute just the token they sampled last (as opposed to prefill or recompute)."""
    num_prefill_tokens: int
    """Tokens computed for the other scheduled sequences."""
    admitted: tuple[Sequence, ...]
    """Sequences scheduled for the first time."""
    preempted: tuple[Sequence, ...]
    admitted_holders: tuple[SlotHolder, ...]


@dataclass(frozen=True, slots=True)
class StepResult:
    sampled: tuple[Sequence, ...]
    """Sequences that sampled one more output token in the step."""
    finished: tuple[Sequence, ...]
    """The sampled sequences that are now complete; their blocks are freed."""


class Scheduler:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.kv_cache = KvCache(config.num_kv_blocks, config.block_size, config.enable_prefix_caching)
        self.waiting: deque[Sequence | SlotHolder] = deque()
        self.running: list[Sequence] = []
        self.holders: set[SlotHolder] = set()

    @property
    def num_running(self) -> int:
        """Requests holding a batching slot, vLLM's ``num_requests_running``."""
        return len(self.running) + len(self.holders)

    @property
    def num_waiting(self) -> int:
        """Requests queued, preempted ones included, vLLM's ``num_requests_waiting``."""
        return len(self.waiting)

    @property
    def has_work(self) -> bool:
        """Whether a step could do anything: slot holders run on their own and need none."""
        return bool(self.running or self.waiting)

    def add(self, entry: Sequence | SlotHolder) -> None:
        self.waiting.append(entry)

    def remove(self, entry: Sequence | SlotHolder) -> None:
        """Take a request out at once, wherever it is, freeing its slot and blocks: a client gave up, or a slot
        holder is done. A step already planned with it skips it. Removing a finished request does nothing."""
        if entry.status is Status.WAITING:
            self.waiting.remove(entry)
            entry.status = Status.ABORTED
        elif entry.status is Status.RUNNING:
            if isinstance(entry, SlotHolder):
                self.holders.remove(entry)
                entry.status = Status.FINISHED
            else:
                self.running.remove(entry)
                self.kv_cache.free(entry)
                entry.status = Status.ABORTED

    def plan_step(self) -> StepPlan:
        """Decide the next step: which sequences compute how many tokens, who is preempted, who is admitted."""
        chunks: list[tuple[Sequence, int]] = []
        preempted: list[Sequence] = []
        budget = self._schedule_running(chunks, preempted)
        admitted: list[Sequence] = []
        holders: list[SlotHolder] = []
        # vLLM admits nobody in a step that had to preempt: the queue's head would only be preempted again.
        if not preempted:
            self._admit_waiting(budget, chunks, admitted, holders)
        num_decoding = num_prefill_tokens = 0
        for sequence, count in chunks:
            # Planned but not applied yet: a decoding sequence computes just the token it sampled last.
            if sequence.num_output > 0 and sequence.num_computed == sequence.num_tokens - 1:
                num_decoding += 1
            else:
                num_prefill_tokens += count
        return StepPlan(
            chunks=tuple(chunks),
            num_decoding=num_decoding,
            num_prefill_tokens=num_prefill_tokens,
            admitted=tuple(admitted),
            preempted=tuple(preempted),
            admitted_holders=tuple(holders),
        )

    def finish_step(self, plan: StepPlan) -> StepResult:
        """Apply a planned step: advance what each sequence has computed, sample a token for each that has
        computed all its tokens, and retire the complete ones."""
        sampled: list[Sequence] = []
        finished: list[Sequence] = []
        for sequence, count in plan.chunks:
            if sequence.status is not Status.RUNNING:
                continue
            sequence.num_computed += count
            if sequence.num_computed < sequence.num_tokens:
                continue
            sequence.num_output += 1
            sampled.append(sequence)
            if sequence.is_complete:
                sequence.status = Status.FINISHED
                self.running.remove(sequence)
                self.kv_cache.free(sequence)
                finished.append(sequence)
        return StepResult(sampled=tuple(sampled), finished=tuple(finished))

    def _schedule_running(self, chunks: list[tuple[Sequence, int]], preempted: list[Sequence]) -> int:
        """Schedule the running sequences, oldest first, preempting as needed; returns the budget left."""
        budget = self.config.max_num_batched_tokens
        index = 0
        while index < len(self.running) and budget > 0:
            sequence = self.running[index]
            count = min(sequence.num_tokens - sequence.num_computed, budget)
            if not self._make_room(sequence, sequence.num_computed + count, preempted):
                break
            self.kv_cache.cache_full_blocks(sequence, sequence.num_computed + count)
            chunks.append((sequence, count))
            budget -= count
            index += 1
        return budget

    def _admit_waiting(
        self,
        budget: int,
        chunks: list[tuple[Sequence, int]],
        admitted: list[Sequence],
        holders: list[SlotHolder],
    ) -> None:
        """Admit from the head of the queue while a slot is free and the head fits."""
        while self.waiting and self.num_running < self.config.max_num_seqs:
            head = self.waiting[0]
            if isinstance(head, SlotHolder):
                self.waiting.popleft()
                head.status = Status.RUNNING
                self.holders.add(head)
                holders.append(head)
                continue
            if budget == 0:
                return
            cached = self.kv_cache.cached_prefix(head)
            num_cached = len(cached) * self.kv_cache.block_size
            count = min(head.num_tokens - num_cached, budget)
            if not self.kv_cache.allocate(head, num_cached + count, cached):
                return
            self.waiting.popleft()
            head.status = Status.RUNNING
            head.num_computed = num_cached
            self.kv_cache.cache_full_blocks(head, num_cached + count)
            self.running.append(head)
            if head.num_preemptions == 0:
                head.num_cached_tokens = num_cached
                admitted.append(head)
            chunks.append((head, count))
            budget -= count

    def _make_room(self, sequence: Sequence, num_tokens: int, preempted: list[Sequence]) -> bool:
        """Get the sequence blocks for ``num_tokens`` tokens, preempting from the back of the batch as long as
        needed; False if the sequence had to preempt itself."""
        while not self.kv_cache.allocate(sequence, num_tokens):
            victim = self.running.pop()
            self.kv_cache.free(victim)
            victim.status = Status.WAITING
            victim.num_computed = 0
            victim.num_preemptions += 1
            self.waiting.appendleft(victim)
            preempted.append(victim)
            if victim is sequence:
                return False
        return True
