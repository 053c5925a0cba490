import pytest

from engine.sim.config import SimConfig
from engine.sim.latency import front_end_seconds, speech_seconds, step_seconds


@pytest.mark.parametrize(
    ("itl_ms", "batch_factor", "decoding", "expected_seconds"),
    [
        (4.0, 0.05, 1, 0.004),  # alone in the batch: the base inter-token latency
        (4.0, 0.05, 0, 0.004),  # a step that only prefills still costs a forward pass
        (4.0, 0.05, 9, 0.0056),  # 4 ms * (1 + 0.05 * 8 others)
        (10.0, 0.0, 64, 0.010),  # no batch penalty configured
    ],
)
def test_a_decode_step_slows_down_with_the_batch(
    itl_ms: float, batch_factor: float, decoding: int, expected_seconds: float
) -> None:
    config = SimConfig(itl_ms=itl_ms, itl_batch_factor=batch_factor, ttft_per_prompt_token_ms=1.0)

    assert step_seconds(config, decoding, num_prefill_tokens=0) == pytest.approx(expected_seconds)


@pytest.mark.parametrize(
    ("decoding", "prefill_tokens", "expected_seconds"),
    [
        (0, 1000, 0.054),  # 4 ms + 1000 * 0.05 ms
        (3, 1000, 0.0544),  # 4 ms * (1 + 0.05 * 2) + 50 ms: the decoding sequences wait for the prefill too
        (3, 0, 0.0044),
    ],
)
def test_prefill_tokens_in_a_step_add_their_cost(decoding: int, prefill_tokens: int, expected_seconds: float) -> None:
    config = SimConfig(itl_ms=4.0, itl_batch_factor=0.05, ttft_per_prompt_token_ms=0.05)

    assert step_seconds(config, decoding, prefill_tokens) == pytest.approx(expected_seconds)


def test_front_end_is_the_fixed_part_of_the_ttft() -> None:
    assert front_end_seconds(SimConfig(ttft_base_ms=15.0)) == pytest.approx(0.015)


def test_speech_is_a_base_plus_a_cost_per_character() -> None:
    config = SimConfig(speech_base_ms=20.0, speech_per_character_ms=0.5)

    assert speech_seconds(config, 100) == pytest.approx(0.070)
