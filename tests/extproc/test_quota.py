"""Token reservations: the estimate at admission and the charge at the end (pure), and reserve/settle in a store."""

from __future__ import annotations

import pytest

from extproc.quota import TokenLimits, Tokens, charge, prompt_estimate, reservation, token_limits
from extproc.reservations import Refusal, Reservation, Reservations
from extproc.usage import Usage
from tests.helpers import repo_settings
from tokenlabs.errors import QuotaExceeded
from tokenlabs.quota.memory import MemoryQuotaStore
from tokenlabs.quota.scopes import prompt_tokens_scope, tokens_scope
from tokenlabs.quota.windows import DAY, MINUTE, Limit
from tokenlabs.settings import LimitSettings

LIMITS = LimitSettings(
    max_request_body_bytes=1 << 20,
    reserve_default_completion_tokens=100,
    reserve_max_tokens=1000,
    reserve_image_tokens=50,
)


def chat(*contents: object, **extra: object) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": c} for c in contents], **extra}


def test_prompt_estimate_counts_text_bytes_and_images_at_a_flat_rate() -> None:
    assert prompt_estimate(chat("abcdefgh"), 50) == 4 + 1 + 2  # overhead, role "user", 8 bytes
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 1_000_000}}
    assert prompt_estimate(chat([{"type": "text", "text": "abcd"}, image]), 50) == 4 + 1 + (1 + 1) + 50
    assert prompt_estimate({"prompt": "abcdefgh"}, 50) == 2
    assert prompt_estimate({"prompt": [1, 2, 3]}, 50) == 3  # token ids
    assert prompt_estimate({}, 50) == 0


def test_reservation_is_prompt_plus_allowed_completion_bounded() -> None:
    assert reservation(chat("abcdefgh", max_tokens=20), LIMITS) == Tokens.of(7, 20)
    assert reservation(chat("abcdefgh", max_completion_tokens=30, max_tokens=20), LIMITS) == Tokens.of(7, 30)
    assert reservation(chat("abcdefgh"), LIMITS) == Tokens.of(7, 100)  # the configured default
    assert reservation(chat("abcdefgh", max_tokens=10**9), LIMITS) == Tokens.of(7, 993)  # the cap
    assert reservation(chat("x" * 100_000), LIMITS).total == 1000
    assert reservation(chat("abcdefgh", max_tokens="many"), LIMITS) == Tokens.of(7, 100)


def test_charge_is_usage_when_reported_else_prompt_plus_streamed_chunks() -> None:
    reserved = Tokens.of(10, 100)
    assert charge(reserved, Usage(12, 5, 17), 99) == Tokens(12, 5, 17)
    assert charge(reserved, None, 7) == Tokens.of(10, 7)  # client gone mid-stream
    assert charge(reserved, None, 0) == Tokens.of(10, 0)  # upstream error: never zero, never all


def test_tier_token_limits_from_settings() -> None:
    limits = token_limits(repo_settings().tiers["free"])
    assert limits.total == (Limit("minute", MINUTE, 5000), Limit("day", DAY, 50000))
    assert limits.prompt == () and limits.completion == () and limits.any


SPLIT = TokenLimits(total=(Limit("minute", MINUTE, 1000),), prompt=(Limit("minute", MINUTE, 300),), completion=())


async def test_reserve_then_settle_charges_exactly_the_usage() -> None:
    store = MemoryQuotaStore()
    reservations = Reservations(store)
    held = await reservations.reserve("acme", SPLIT, Tokens.of(100, 400))
    assert isinstance(held, Reservation)
    assert dict(held.headers)["x-ratelimit-remaining-tokens"] == "500"
    await reservations.settle(held, Tokens(90, 30, 120))
    (total,) = await store.peek(tokens_scope("acme"), SPLIT.total)
    (prompt,) = await store.peek(prompt_tokens_scope("acme"), SPLIT.prompt)
    assert (total.used, prompt.used) == (120, 90)


async def test_a_refusal_holds_nothing_and_says_when_to_retry() -> None:
    store = MemoryQuotaStore()
    reservations = Reservations(store)
    refused = await reservations.reserve("acme", SPLIT, Tokens.of(301, 10))  # total fits, prompt does not
    assert isinstance(refused, Refusal) and isinstance(refused.error, QuotaExceeded)
    assert 1 <= refused.error.retry_after_s <= 60
    assert "prompt tokens" in refused.error.message
    (total,) = await store.peek(tokens_scope("acme"), SPLIT.total)
    assert total.used == 0


@pytest.mark.parametrize("amount", [1001, 5000])
async def test_a_reservation_larger_than_the_window_is_refused(amount: int) -> None:
    refused = await Reservations(MemoryQuotaStore()).reserve("acme", SPLIT, Tokens.of(0, amount))
    assert isinstance(refused, Refusal)


def test_one_byte_per_token_makes_the_prompt_estimate_a_bound() -> None:
    strict = LimitSettings(max_request_body_bytes=1 << 20, reserve_bytes_per_token=1)
    assert prompt_estimate(chat("abcdefgh"), 50, bytes_per_token=1) == 4 + 4 + 8
    assert reservation(chat("abcdefgh", max_tokens=5), strict) == Tokens.of(16, 5)
