import pytest

from engine.sim.config import SimConfig
from engine.sim.latency import inter_token_seconds, prefill_seconds


@pytest.mark.parametrize(
    ("base_ms", "per_token_ms", "uncached_tokens", "expected_seconds"),
    [
        (15.0, 0.05, 0, 0.015),  # an empty (or fully cached) prompt costs only the base
        (15.0, 0.05, 1000, 0.065),  # 15 ms + 1000 * 0.05 ms
        (0.0, 1.0, 250, 0.25),  # purely proportional to the prompt
    ],
)
def test_prefill_grows_with_uncached_prompt_tokens(
    base_ms: float, per_token_ms: float, uncached_tokens: int, expected_seconds: float
) -> None:
    config = SimConfig(ttft_base_ms=base_ms, ttft_per_prompt_token_ms=per_token_ms)

    assert prefill_seconds(config, uncached_tokens) == pytest.approx(expected_seconds)


@pytest.mark.parametrize(
    ("itl_ms", "batch_factor", "running", "expected_seconds"),
    [
        (4.0, 0.05, 1, 0.004),  # alone in the batch: the base inter-token latency
        (4.0, 0.05, 0, 0.004),  # counted before admission: treated as alone, never faster
        (4.0, 0.05, 9, 0.0056),  # 4 ms * (1 + 0.05 * 8 others)
        (10.0, 0.0, 64, 0.010),  # no batch penalty configured
    ],
)
def test_inter_token_latency_grows_with_the_running_batch(
    itl_ms: float, batch_factor: float, running: int, expected_seconds: float
) -> None:
    config = SimConfig(itl_ms=itl_ms, itl_batch_factor=batch_factor)

    assert inter_token_seconds(config, running) == pytest.approx(expected_seconds)
