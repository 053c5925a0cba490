from tokenlabs.quota.memory import MemoryQuotaStore
from tokenlabs.quota.windows import DAY, MINUTE, Limit

PER_MINUTE = Limit("minute", MINUTE, 3)
PER_DAY = Limit("day", DAY, 5)
LIMITS = (PER_MINUTE, PER_DAY)
NOW = 16_666 * MINUTE + 45.0  # 15 s before a minute ends


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_acquire_counts_in_every_window_or_in_none() -> None:
    clock = Clock(NOW)
    store = MemoryQuotaStore(clock)
    for expected in (1, 2, 3):
        admission = await store.acquire("requests:acme", LIMITS)
        assert admission.admitted and [w.used for w in admission.windows] == [expected, expected]
    refused = await store.acquire("requests:acme", LIMITS)
    assert not refused.admitted
    assert [(w.used, w.fits) for w in refused.windows] == [(3, False), (3, True)]
    assert refused.retry_after_s == refused.windows[0].reset_s == 15.0
    assert [w.used for w in await store.peek("requests:acme", LIMITS)] == [3, 3]


async def test_an_amount_that_does_not_fit_is_not_counted_anywhere() -> None:
    store = MemoryQuotaStore(Clock(NOW))
    assert (await store.acquire("tokens:acme", LIMITS, 2)).admitted
    refused = await store.acquire("tokens:acme", LIMITS, 2)
    assert not refused.admitted and [w.fits for w in refused.windows] == [False, True]
    assert [w.used for w in await store.peek("tokens:acme", LIMITS)] == [2, 2]


async def test_a_new_minute_starts_from_zero_while_the_day_keeps_counting() -> None:
    clock = Clock(NOW)
    store = MemoryQuotaStore(clock)
    for _ in range(3):
        await store.acquire("requests:acme", LIMITS)
    clock.now += 60
    admission = await store.acquire("requests:acme", LIMITS)
    assert admission.admitted and [w.used for w in admission.windows] == [1, 4]
    assert admission.windows[0].index == int(clock.now // 60)


async def test_scopes_are_counted_apart() -> None:
    store = MemoryQuotaStore(Clock(NOW))
    await store.acquire("requests:acme", LIMITS, 3)
    assert (await store.acquire("requests:globex", LIMITS, 3)).admitted


async def test_adjust_applies_only_to_the_window_that_was_acquired_in() -> None:
    clock = Clock(NOW)
    store = MemoryQuotaStore(clock)
    admission = await store.acquire("tokens:acme", LIMITS, 2)
    await store.adjust("tokens:acme", admission.windows, 1)
    assert [w.used for w in await store.peek("tokens:acme", LIMITS)] == [3, 3]
    clock.now += 60
    await store.adjust("tokens:acme", admission.windows, -3)
    # The minute has moved on: only the day, still the same window, is settled.
    assert [w.used for w in await store.peek("tokens:acme", LIMITS)] == [0, 0]
    await store.acquire("tokens:acme", LIMITS, 1)
    await store.adjust("tokens:acme", admission.windows, 2)
    assert [w.used for w in await store.peek("tokens:acme", LIMITS)] == [1, 3]


async def test_adjust_never_goes_below_zero_and_may_exceed_the_limit() -> None:
    store = MemoryQuotaStore(Clock(NOW))
    admission = await store.acquire("tokens:acme", LIMITS, 1)
    await store.adjust("tokens:acme", admission.windows, -10)
    assert [w.used for w in await store.peek("tokens:acme", LIMITS)] == [0, 0]
    await store.adjust("tokens:acme", admission.windows, 10)
    peeked = await store.peek("tokens:acme", LIMITS)
    assert [w.used for w in peeked] == [10, 10] and [w.remaining for w in peeked] == [0, 0]


async def test_peek_writes_nothing() -> None:
    clock = Clock(NOW)
    store = MemoryQuotaStore(clock)
    peeked = await store.peek("requests:acme", LIMITS)
    assert [(w.used, w.index) for w in peeked] == [(0, int(clock.now // 60)), (0, int(clock.now // DAY))]
    assert peeked[0].reset_s == 15.0
    assert (await store.acquire("requests:acme", LIMITS, 3)).admitted
