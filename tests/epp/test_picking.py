"""EndpointPicker.choose: pool lookup, candidates, saturation modes, the cycle, and the picks it remembers."""

from __future__ import annotations

import asyncio
import random

import pytest

from epp.metrics.snapshot import MetricsBoard
from epp.picking import EndpointPicker, Pick
from epp.scheduling.framework import Scheduler
from epp.scheduling.interfaces import SchedulingRequest
from epp.scheduling.registry import build_profile
from tests.epp.fakes import FakeClock, directory, endpoint_metrics
from tokenlabs.errors import RateLimited, Unavailable
from tokenlabs.picker_settings import EppSettings, SaturationMode, SaturationSettings

POOL = ("a:1", "b:1")
REQUEST = SchedulingRequest("m", "hello")


def make_picker(
    board: MetricsBoard,
    clock: FakeClock,
    mode: SaturationMode = SaturationMode.SHED,
    profile: str = "least_request",
    queue_timeout_s: float = 5.0,
    max_queued: int = 1000,
) -> EndpointPicker:
    settings = EppSettings(
        "127.0.0.1",
        9003,
        9093,
        1.0,
        metrics_staleness_s=2.0,
        fallbacks=1,
        saturation=SaturationSettings(
            mode=mode, queue_depth=5, kv_cache_usage=0.8, queue_timeout_s=queue_timeout_s, max_queued=max_queued
        ),
    )
    scheduler = Scheduler(build_profile({"profile": profile}), settings.fallbacks, random.Random(1))
    pools = directory({"p": POOL, "empty": ()}, {"m": "p", "nobody": "empty"})
    return EndpointPicker(pools, board, scheduler, settings, clock)


def publish(board: MetricsBoard, clock: FakeClock, **waiting: int) -> None:
    """Fresh metrics (scraped now) with the given queues, e.g. ``publish(board, clock, a=5, b=5)``."""
    for name, count in waiting.items():
        board.publish(f"{name}:1", endpoint_metrics(waiting=count, scraped_at=clock()))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def board() -> MetricsBoard:
    return MetricsBoard()


async def test_a_model_without_pool_is_unavailable(board: MetricsBoard, clock: FakeClock) -> None:
    with pytest.raises(Unavailable) as caught:
        await make_picker(board, clock).choose(SchedulingRequest("unknown"))
    assert caught.value.code == "no_pool"


async def test_a_pool_without_fresh_metrics_is_unavailable(board: MetricsBoard, clock: FakeClock) -> None:
    picker = make_picker(board, clock)
    with pytest.raises(Unavailable) as caught:
        await picker.choose(REQUEST)
    assert caught.value.code == "no_healthy_endpoint"
    publish(board, clock, a=0, b=0)
    clock.advance(2.5)  # older than the 2 s staleness
    with pytest.raises(Unavailable):
        await picker.choose(REQUEST)
    with pytest.raises(Unavailable):
        await picker.choose(SchedulingRequest("nobody"))  # a pool with no member at all


async def test_schedules_on_the_pool(board: MetricsBoard, clock: FakeClock) -> None:
    publish(board, clock, a=3, b=0)
    pick = await make_picker(board, clock).choose(REQUEST)
    assert pick.pool.name == "p"
    assert pick.reason == "scheduled"
    assert pick.decision.addresses == ("b:1", "a:1")  # least request first, then the fallback


async def test_picks_count_until_a_scrape_shows_them(board: MetricsBoard, clock: FakeClock) -> None:
    publish(board, clock, a=0, b=0)
    picker = make_picker(board, clock)
    clock.advance(0.01)
    chosen = [(await picker.choose(REQUEST)).decision.chosen.address for _ in range(4)]
    # Without the pending picks every cycle would see two empty endpoints; with them the burst alternates.
    assert sorted(chosen) == ["a:1", "a:1", "b:1", "b:1"]
    # A newer scrape includes those requests: pending counts start over from it.
    clock.advance(0.01)
    publish(board, clock, a=2, b=0)
    assert (await picker.choose(REQUEST)).decision.chosen.address == "b:1"


async def test_the_subset_hint_restricts_the_pick(board: MetricsBoard, clock: FakeClock) -> None:
    publish(board, clock, a=3, b=0)
    picker = make_picker(board, clock)
    assert (await picker.choose(REQUEST, {"a:1"})).decision.addresses == ("a:1",)
    with pytest.raises(Unavailable):
        await picker.choose(REQUEST, {"elsewhere:1"})


async def test_shed_mode_answers_429_for_a_saturated_pool(board: MetricsBoard, clock: FakeClock) -> None:
    board.publish("a:1", endpoint_metrics(waiting=5, scraped_at=clock()))
    board.publish("b:1", endpoint_metrics(kv_cache_usage=0.9, scraped_at=clock()))
    picker = make_picker(board, clock, SaturationMode.SHED)
    with pytest.raises(RateLimited) as caught:
        await picker.choose(REQUEST)
    assert (caught.value.code, caught.value.retry_after_s) == ("pool_saturated", 1)
    # Saturation is judged among the hinted endpoints only... and b has room by its queue but not its cache.
    with pytest.raises(RateLimited):
        await picker.choose(REQUEST, {"b:1"})
    publish(board, clock, b=0)
    assert (await picker.choose(REQUEST)).decision.chosen.address == "b:1"


async def test_off_mode_schedules_on_a_saturated_pool(board: MetricsBoard, clock: FakeClock) -> None:
    publish(board, clock, a=9, b=7)
    pick = await make_picker(board, clock, SaturationMode.OFF).choose(REQUEST)
    assert (pick.reason, pick.decision.chosen.address) == ("scheduled", "b:1")


async def test_queue_mode_waits_for_a_scrape_showing_room(board: MetricsBoard, clock: FakeClock) -> None:
    publish(board, clock, a=5, b=6)
    picker = make_picker(board, clock, SaturationMode.QUEUE)
    waiting = asyncio.create_task(picker.choose(REQUEST))
    await asyncio.sleep(0)
    assert not waiting.done() and picker.queued == 1
    clock.advance(0.05)
    publish(board, clock, a=7)  # a scrape that still shows no room: keep waiting
    await asyncio.sleep(0)
    assert not waiting.done()
    clock.advance(0.05)
    publish(board, clock, b=1)
    pick: Pick = await asyncio.wait_for(waiting, 1.0)
    assert (pick.reason, pick.decision.chosen.address) == ("queued", "b:1")
    assert picker.queued == 0


async def test_queue_mode_releases_only_as_many_as_there_is_room_for(board: MetricsBoard, clock: FakeClock) -> None:
    publish(board, clock, a=5, b=5)
    picker = make_picker(board, clock, SaturationMode.QUEUE, queue_timeout_s=0.2)
    queued = [asyncio.create_task(picker.choose(REQUEST)) for _ in range(4)]
    await asyncio.sleep(0)
    assert picker.queued == 4
    clock.advance(0.05)
    publish(board, clock, a=3)  # room for two on a (3 waiting + 2 picked = the queue depth of 5)
    done, _ = await asyncio.wait(queued, timeout=0.1)
    assert sorted((task.result().reason, task.result().decision.chosen.address) for task in done) == [
        ("queued", "a:1"),
        ("queued", "a:1"),
    ]
    # The other two time out and are sent anyway.
    rest = await asyncio.wait_for(asyncio.gather(*(task for task in queued if task not in done)), 1.0)
    assert [pick.reason for pick in rest] == ["saturated", "saturated"]
    assert picker.queued == 0


async def test_queue_mode_sends_anyway_after_the_timeout(board: MetricsBoard, clock: FakeClock) -> None:
    publish(board, clock, a=5, b=9)
    picker = make_picker(board, clock, SaturationMode.QUEUE, queue_timeout_s=0.05)
    pick = await asyncio.wait_for(picker.choose(REQUEST), 1.0)
    assert (pick.reason, pick.decision.chosen.address) == ("saturated", "a:1")
    assert picker.queued == 0


async def test_queue_mode_refuses_beyond_max_queued(board: MetricsBoard, clock: FakeClock) -> None:
    publish(board, clock, a=5, b=5)
    picker = make_picker(board, clock, SaturationMode.QUEUE, max_queued=1)
    first = asyncio.create_task(picker.choose(REQUEST))
    await asyncio.sleep(0)
    with pytest.raises(RateLimited) as caught:
        await picker.choose(REQUEST)
    assert (caught.value.code, caught.value.retry_after_s) == ("queue_full", 1)
    clock.advance(0.05)
    publish(board, clock, a=0)
    assert (await asyncio.wait_for(first, 1.0)).reason == "queued"
    assert picker.queued == 0


async def test_a_cancelled_queued_request_leaves_the_queue(board: MetricsBoard, clock: FakeClock) -> None:
    publish(board, clock, a=5, b=5)
    picker = make_picker(board, clock, SaturationMode.QUEUE)
    waiting = asyncio.create_task(picker.choose(REQUEST))
    await asyncio.sleep(0)
    assert picker.queued == 1
    waiting.cancel()  # the client went away
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert picker.queued == 0


async def test_a_queued_request_whose_pool_goes_stale_is_unavailable(board: MetricsBoard, clock: FakeClock) -> None:
    publish(board, clock, a=5, b=5)
    picker = make_picker(board, clock, SaturationMode.QUEUE)
    waiting = asyncio.create_task(picker.choose(REQUEST))
    await asyncio.sleep(0)
    clock.advance(10.0)  # every endpoint's metrics are now stale
    board.publish("other:1", endpoint_metrics(scraped_at=clock()))
    with pytest.raises(Unavailable):
        await asyncio.wait_for(waiting, 1.0)


async def test_forget_drops_the_recent_picks_and_the_prefix_blocks_of_departed_endpoints(
    board: MetricsBoard, clock: FakeClock
) -> None:
    picker = make_picker(board, clock, profile="gie_default")
    publish(board, clock, a=0, b=0)
    long_prompt = SchedulingRequest("m", "x" * 640)  # ten prefix blocks
    chosen = (await picker.choose(long_prompt)).decision.chosen
    assert chosen.address in POOL
    picker.forget({chosen.address})
    again = (await picker.choose(long_prompt)).decision
    # Nothing is remembered about the forgotten endpoint: no pick pending on it, no blocks held.
    forgotten = next(candidate for candidate in again.ranked if candidate.address == chosen.address)
    assert forgotten.pending == 0
