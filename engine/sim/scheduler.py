"""Continuous batching admission: which requests run now and which wait.

Requests are admitted first come, first served while a batching slot and enough KV blocks are free; the head of
the queue blocks those behind it, as vLLM's FCFS policy does, so a long prompt is never starved by short ones.
"""

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from engine.sim.kv_cache import KvAllocation, KvCache


@dataclass(frozen=True, eq=False)
class _Waiter:
    prompt_tokens: Sequence[str]
    final_length: int
    admitted: asyncio.Future[KvAllocation]


class BatchScheduler:
    def __init__(self, max_num_seqs: int, kv_cache: KvCache) -> None:
        self._max_num_seqs = max_num_seqs
        self._kv_cache = kv_cache
        self._running = 0
        self._waiters: deque[_Waiter] = deque()

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def admit(self, prompt_tokens: Sequence[str], final_length: int) -> KvAllocation:
        """Wait for a slot and the KV blocks for a sequence that ends at ``final_length`` tokens.

        The caller must ``release`` the allocation it gets back, also when it is cancelled afterwards.
        """
        if not self._waiters and self._has_room_for(final_length):
            return self._start(prompt_tokens, final_length)
        waiter = _Waiter(prompt_tokens, final_length, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            return await waiter.admitted
        except asyncio.CancelledError:
            if waiter.admitted.done() and not waiter.admitted.cancelled():
                # Admitted in the same loop iteration as the cancellation: the caller never sees the
                # allocation, so give it back here.
                self.release(waiter.admitted.result())
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
                self._admit_waiters()
            raise

    def release(self, allocation: KvAllocation) -> None:
        self._kv_cache.free(allocation)
        self._running -= 1
        self._admit_waiters()

    def _has_room_for(self, final_length: int) -> bool:
        return self._running < self._max_num_seqs and self._kv_cache.can_allocate(final_length)

    def _start(self, prompt_tokens: Sequence[str], final_length: int) -> KvAllocation:
        self._running += 1
        return self._kv_cache.allocate(prompt_tokens, final_length)

    def _admit_waiters(self) -> None:
        while self._waiters:
            head = self._waiters[0]
            # A cancelled waiter leaves the queue itself once its task runs again; until then it must not be
            # handed an allocation nobody would release.
            if head.admitted.cancelled():
                self._waiters.popleft()
                continue
            if not self._has_room_for(head.final_length):
                return
            self._waiters.popleft()
            head.admitted.set_result(self._start(head.prompt_tokens, head.final_length))
