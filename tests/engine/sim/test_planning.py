import pytest

from engine.sim.config import SimConfig
from engine.sim.planning import plan_generation


@pytest.mark.parametrize(
    ("max_tokens", "prompt_length", "expected_length", "expected_finish"),
    [
        (None, 10, 16, "stop"),  # no limit: the natural 16-token completion
        (100, 10, 16, "stop"),  # a generous limit does not lengthen it
        (16, 10, 16, "stop"),  # a limit equal to the natural length does not cut it
        (5, 10, 5, "length"),  # cut by max_tokens
        (None, 60, 4, "length"),  # no max_tokens: the 4 tokens left in the 64-token context cut it
    ],
)
def test_plan_length_and_finish_reason(
    max_tokens: int | None, prompt_length: int, expected_length: int, expected_finish: str
) -> None:
    config = SimConfig(output_tokens=16, num_kv_blocks=4, block_size=16)  # max_model_len 64

    plan = plan_generation(config, ["t"] * prompt_length, max_tokens)

    assert (len(plan.output_tokens), plan.finish_reason) == (expected_length, expected_finish)
