import pytest

from tokenlabs.quota.windows import (
    DAY,
    MINUTE,
    Admission,
    Limit,
    WindowState,
    validate_limits,
    window_index,
    window_reset,
)

PER_MINUTE = Limit("minute", MINUTE, 10)
PER_DAY = Limit("day", DAY, 100)


def state(limit: Limit, used: int, reset_s: float, fits: bool = True) -> WindowState:
    return WindowState(limit, 0, used, reset_s, fits)


def test_windows_are_aligned_to_the_clock() -> None:
    assert window_index(119.9, MINUTE) == 1
    assert window_index(120.0, MINUTE) == 2
    assert window_reset(119.5, MINUTE) == pytest.approx(0.5)
    assert window_reset(120.0, MINUTE) == pytest.approx(60.0)
    # Day windows start at 00:00 UTC: 2024-01-02T00:00:00Z is 1704153600.
    assert window_index(1704153599, DAY) + 1 == window_index(1704153600, DAY)
    assert window_reset(1704153600 - 3600, DAY) == pytest.approx(3600)


def test_remaining_never_goes_negative() -> None:
    assert state(PER_MINUTE, 12, 1.0).remaining == 0
    assert state(PER_MINUTE, 4, 1.0).remaining == 6


def test_binding_window_is_the_one_with_least_remaining() -> None:
    admission = Admission(True, (state(PER_MINUTE, 9, 30.0), state(PER_DAY, 50, 3000.0)))
    assert admission.binding is not None and admission.binding.limit is PER_MINUTE
    admission = Admission(True, (state(PER_MINUTE, 1, 30.0), state(PER_DAY, 99, 3000.0)))
    assert admission.binding is not None and admission.binding.limit is PER_DAY


def test_binding_ties_go_to_the_window_ending_last() -> None:
    admission = Admission(False, (state(PER_MINUTE, 10, 30.0), state(PER_DAY, 100, 3000.0)))
    assert admission.binding is not None and admission.binding.limit is PER_DAY
    assert Admission(True, ()).binding is None


def test_retry_after_waits_for_every_refusing_window_only() -> None:
    refused_by_minute = Admission(False, (state(PER_MINUTE, 10, 30.0, fits=False), state(PER_DAY, 5, 3000.0)))
    assert refused_by_minute.retry_after_s == 30.0
    refused_by_both = Admission(False, (state(PER_MINUTE, 10, 30.0, fits=False), state(PER_DAY, 100, 3000.0, False)))
    assert refused_by_both.retry_after_s == 3000.0
    assert Admission(True, (state(PER_MINUTE, 1, 30.0),)).retry_after_s == 0.0


@pytest.mark.parametrize(
    "limits",
    [[Limit("a", 0, 1)], [Limit("a", 60, -1)], [Limit("a", 60, 1), Limit("b", 60, 2)]],
)
def test_invalid_limits_are_rejected(limits: list[Limit]) -> None:
    with pytest.raises(ValueError):
        validate_limits(limits)


def test_valid_limits_pass() -> None:
    validate_limits([PER_MINUTE, PER_DAY, Limit("zero", 1, 0)])
