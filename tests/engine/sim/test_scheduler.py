"""The scheduling rules step by step, without time: admission, chunked prefill, prefix hits and preemption."""

from typing import Any

from engine.sim.config import SimConfig
from engine.sim.planning import GenerationPlan
from engine.sim.scheduler import Scheduler, StepPlan, StepResult
from engine.sim.sequence import Sequence, SlotHolder, Status


def make_scheduler(**knobs: Any) -> Scheduler:
    return Scheduler(SimConfig(**knobs))


def make_sequence(name: str, prompt_tokens: int, output_tokens: int, prompt: tuple[str, ...] = ()) -> Sequence:
    """A sequence whose tokens are its own (``name``-tagged), unless ``prompt`` gives them."""
    prompt = prompt or tuple(f"{name}{index}" for index in range(prompt_tokens))
    output = tuple(f"{name}-out{index}" for index in range(output_tokens))
    return Sequence(GenerationPlan(prompt, output, "stop"), arrival=0.0, queued_at=0.0)


def step(scheduler: Scheduler) -> tuple[StepPlan, StepResult]:
    plan = scheduler.plan_step()
    return plan, scheduler.finish_step(plan)


def scheduled(plan: StepPlan) -> list[tuple[Sequence, int]]:
    return list(plan.chunks)


def test_admits_up_to_max_num_seqs_and_queues_the_rest() -> None:
    scheduler = make_scheduler(max_num_seqs=2)
    first, second, third = (make_sequence(name, 3, 2) for name in "abc")
    for sequence in (first, second, third):
        scheduler.add(sequence)

    plan, result = step(scheduler)
    assert scheduled(plan) == [(first, 3), (second, 3)]
    assert plan.admitted == (first, second)
    assert result.sampled == (first, second)  # a whole prompt in one step gives the first token
    assert (scheduler.num_running, scheduler.num_waiting) == (2, 1)

    plan, result = step(scheduler)
    assert scheduled(plan) == [(first, 1), (second, 1)]
    assert result.finished == (first, second)
    assert (first.status, scheduler.num_running) == (Status.FINISHED, 0)

    plan, _ = step(scheduler)
    assert scheduled(plan) == [(third, 3)]


def test_the_head_of_the_queue_blocks_those_behind_it() -> None:
    # 3 blocks of 4 tokens: the running sequence holds 2, the 8-token head needs 2, the 1-token one behind it 1.
    scheduler = make_scheduler(num_kv_blocks=3, block_size=4)
    running, head, small = make_sequence("r", 6, 5), make_sequence("h", 8, 1), make_sequence("s", 1, 1)
    scheduler.add(running)
    step(scheduler)
    scheduler.add(head)
    scheduler.add(small)

    plan, _ = step(scheduler)
    assert scheduled(plan) == [(running, 1)]
    assert scheduler.kv_cache.pool.num_free == 1  # room for the small one, which must wait its turn
    assert list(scheduler.waiting) == [head, small]


def test_a_long_prompt_is_prefilled_in_chunks_within_the_token_budget() -> None:
    scheduler = make_scheduler(max_num_batched_tokens=4)
    decoding, long = make_sequence("d", 2, 4), make_sequence("l", 9, 1)
    scheduler.add(decoding)
    step(scheduler)
    scheduler.add(long)

    chunks = []
    for _ in range(3):
        plan, result = step(scheduler)
        chunks.append((scheduled(plan), plan.num_decoding, plan.num_prefill_tokens, long in result.sampled))

    # The running sequence's decode token comes out of the same budget the prefill chunks share.
    assert chunks == [
        ([(decoding, 1), (long, 3)], 1, 3, False),
        ([(decoding, 1), (long, 3)], 1, 3, False),
        ([(decoding, 1), (long, 3)], 1, 3, True),
    ]


def test_a_shared_prefix_is_not_computed_again() -> None:
    scheduler = make_scheduler(block_size=4)
    prompt = tuple(f"t{index}" for index in range(10))
    earlier, later = make_sequence("e", 10, 1, prompt), make_sequence("l", 10, 1, prompt)
    scheduler.add(earlier)
    step(scheduler)
    scheduler.add(later)

    plan, result = step(scheduler)
    # Blocks t0-t3 and t4-t7 are cached; t8 and t9 fill only half a block and are computed again.
    assert scheduled(plan) == [(later, 2)]
    assert (plan.admitted, later.num_cached_tokens, result.sampled) == ((later,), 8, (later,))


def test_running_out_of_blocks_preempts_the_newest_which_later_resumes_where_it_was() -> None:
    # 4 blocks of 2 tokens: two 3-token prompts take 2 blocks each, and the third output token needs a new one.
    scheduler = make_scheduler(num_kv_blocks=4, block_size=2)
    older, newer = make_sequence("o", 3, 4), make_sequence("n", 3, 4)
    scheduler.add(older)
    scheduler.add(newer)
    step(scheduler)
    step(scheduler)
    assert (older.num_output, newer.num_output, scheduler.kv_cache.pool.num_free) == (2, 2, 0)

    plan, result = step(scheduler)
    assert plan.preempted == (newer,)
    assert scheduled(plan) == [(older, 1)]
    assert (newer.status, newer.num_computed, newer.blocks, newer.num_preemptions) == (Status.WAITING, 0, [], 1)
    assert list(scheduler.waiting) == [newer]
    assert (scheduler.num_running, scheduler.num_waiting) == (1, 1)
    assert result.sampled == (older,)

    plan, result = step(scheduler)  # no room yet: 5 tokens to recompute need 3 blocks
    assert (scheduled(plan), result.finished) == ([(older, 1)], (older,))

    plan, result = step(scheduler)
    # Readmitted: its first prompt block is still cached, the other 3 of its 5 tokens (prompt and output so far)
    # are recomputed, and the next token sampled is its third.
    assert scheduled(plan) == [(newer, 3)]
    assert (plan.admitted, plan.num_prefill_tokens) == ((), 3)
    assert (result.sampled, newer.num_output) == ((newer,), 3)
    _, result = step(scheduler)
    assert (result.finished, newer.num_output) == ((newer,), 4)


def test_the_newest_sequence_preempts_itself_when_it_is_the_one_that_needs_a_block() -> None:
    scheduler = make_scheduler(num_kv_blocks=4, block_size=2)
    older, newer = make_sequence("o", 3, 2), make_sequence("n", 4, 3)
    scheduler.add(older)
    scheduler.add(newer)
    step(scheduler)  # older holds 2 blocks for 3 tokens, newer 2 for 4

    plan, _ = step(scheduler)
    assert scheduled(plan) == [(older, 1)]  # older's 4th token fits its blocks; newer's 5th does not
    assert plan.preempted == (newer,)


def test_nobody_is_admitted_in_a_step_that_preempted() -> None:
    scheduler = make_scheduler(num_kv_blocks=4, block_size=2)
    older, newer = make_sequence("o", 3, 4), make_sequence("n", 3, 4)
    scheduler.add(older)
    scheduler.add(newer)
    step(scheduler)
    step(scheduler)
    tiny = make_sequence("t", 1, 1)
    scheduler.add(tiny)

    plan, _ = step(scheduler)
    assert (plan.preempted, plan.admitted) == ((newer,), ())
    assert list(scheduler.waiting) == [newer, tiny]


def test_removing_a_request_frees_its_slot_and_blocks_at_once_and_its_planned_step_skips_it() -> None:
    scheduler = make_scheduler(max_num_seqs=1)
    running, waiting = make_sequence("r", 20, 5), make_sequence("w", 3, 1)
    scheduler.add(running)
    scheduler.add(waiting)
    plan = scheduler.plan_step()

    scheduler.remove(waiting)
    scheduler.remove(running)
    result = scheduler.finish_step(plan)

    assert (result.sampled, running.num_output, running.status) == ((), 0, Status.ABORTED)
    assert (scheduler.num_running, scheduler.num_waiting, scheduler.kv_cache.usage) == (0, 0, 0.0)
    assert not scheduler.has_work


def test_slot_holders_queue_with_sequences_and_hold_a_slot_but_no_blocks() -> None:
    scheduler = make_scheduler(max_num_seqs=1)
    holder = SlotHolder(0.0, waiter=None)  # type: ignore[arg-type]  # never awaited here
    sequence = make_sequence("s", 3, 1)
    scheduler.add(holder)
    scheduler.add(sequence)

    plan, _ = step(scheduler)
    assert (plan.admitted_holders, plan.chunks) == ((holder,), ())
    assert (scheduler.num_running, scheduler.num_waiting, scheduler.kv_cache.usage) == (1, 1, 0.0)

    scheduler.remove(holder)
    plan, _ = step(scheduler)
    assert (holder.status, scheduled(plan)) == (Status.FINISHED, [(sequence, 3)])
