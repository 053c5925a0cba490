import asyncio

import pytest

from engine.sim.kv_cache import KvCache
from engine.sim.scheduler import BatchScheduler


def make_scheduler(max_num_seqs: int, num_blocks: int = 100) -> tuple[BatchScheduler, KvCache]:
    cache = KvCache(num_blocks=num_blocks, block_size=4)
    return BatchScheduler(max_num_seqs, cache), cache


async def test_admits_up_to_max_num_seqs_then_queues() -> None:
    scheduler, _ = make_scheduler(max_num_seqs=2)
    first = await scheduler.admit(["t"], 4)
    await scheduler.admit(["t"], 4)
    third = asyncio.create_task(scheduler.admit(["t"], 4))
    await asyncio.sleep(0)

    assert (scheduler.running, scheduler.waiting) == (2, 1)
    scheduler.release(first)
    await third
    assert (scheduler.running, scheduler.waiting) == (2, 0)


async def test_waiters_are_admitted_first_come_first_served() -> None:
    scheduler, _ = make_scheduler(max_num_seqs=1)
    holder = await scheduler.admit(["t"], 4)
    order: list[str] = []

    async def request(name: str) -> None:
        allocation = await scheduler.admit(["t"], 4)
        order.append(name)
        scheduler.release(allocation)

    tasks = [asyncio.create_task(request(name)) for name in ("a", "b", "c")]
    await asyncio.sleep(0)
    scheduler.release(holder)
    await asyncio.gather(*tasks)

    assert order == ["a", "b", "c"]


async def test_kv_capacity_also_limits_admission_and_blocks_the_queue_head() -> None:
    scheduler, cache = make_scheduler(max_num_seqs=8, num_blocks=3)
    big = await scheduler.admit(["t"], 8)  # reserves 2 of 3 blocks
    needs_two = asyncio.create_task(scheduler.admit(["t"], 8))
    await asyncio.sleep(0)
    needs_one = asyncio.create_task(scheduler.admit(["t"], 4))
    await asyncio.sleep(0)

    # One block is free, but the head of the queue needs two: FCFS keeps the small one waiting too.
    assert (scheduler.running, scheduler.waiting) == (1, 2)
    scheduler.release(big)
    await needs_two
    await needs_one
    assert (scheduler.running, scheduler.waiting, cache.held_blocks) == (2, 0, 2)


async def test_cancelled_waiter_leaves_the_queue_and_lets_the_next_in() -> None:
    scheduler, cache = make_scheduler(max_num_seqs=1)
    holder = await scheduler.admit(["t"], 4)
    abandoned = asyncio.create_task(scheduler.admit(["t"], 4))
    patient = asyncio.create_task(scheduler.admit(["t"], 4))
    await asyncio.sleep(0)

    abandoned.cancel()
    with pytest.raises(asyncio.CancelledError):
        await abandoned
    assert scheduler.waiting == 1
    scheduler.release(holder)
    scheduler.release(await patient)
    assert (scheduler.running, scheduler.waiting, cache.held_blocks) == (0, 0, 0)


async def test_waiter_cancelled_in_the_moment_it_is_admitted_gives_its_slot_back() -> None:
    scheduler, cache = make_scheduler(max_num_seqs=1)
    holder = await scheduler.admit(["t"], 4)
    waiter = asyncio.create_task(scheduler.admit(["t"], 4))
    await asyncio.sleep(0)

    scheduler.release(holder)  # admits the waiter, whose task has not run yet...
    waiter.cancel()  # ...and is cancelled before it could see its allocation
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (scheduler.running, scheduler.waiting, cache.held_blocks) == (0, 0, 0)


async def test_waiter_cancelled_before_a_release_is_skipped_not_admitted() -> None:
    scheduler, cache = make_scheduler(max_num_seqs=1)
    holder = await scheduler.admit(["t"], 4)
    waiter = asyncio.create_task(scheduler.admit(["t"], 4))
    await asyncio.sleep(0)

    waiter.cancel()  # cancelled, but its task has not yet run to leave the queue...
    scheduler.release(holder)  # ...when a release looks for someone to admit
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (scheduler.running, scheduler.waiting, cache.held_blocks) == (0, 0, 0)
