import pytest

from engine.sim.config import SimConfig


def test_defaults_match_the_documented_latency_model() -> None:
    config = SimConfig()

    assert (config.ttft_base_ms, config.ttft_per_prompt_token_ms, config.itl_ms) == (15.0, 0.05, 4.0)
    assert (config.itl_batch_factor, config.output_tokens, config.max_num_seqs) == (0.05, 16, 8)
    assert (config.num_kv_blocks, config.block_size) == (1024, 16)
    assert (config.max_num_batched_tokens, config.enable_prefix_caching) == (2048, True)


def test_max_model_len_is_the_kv_capacity_in_tokens() -> None:
    # 10 blocks of 4 tokens hold one sequence of at most 40 tokens.
    assert SimConfig(num_kv_blocks=10, block_size=4).max_model_len == 40


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ttft_base_ms", -1.0),  # time cannot run backwards
        ("ttft_per_prompt_token_ms", float("nan")),  # NaN would poison every sleep
        ("itl_ms", float("inf")),  # a request would never finish
        ("itl_batch_factor", "0.1"),  # strings are not coerced
        ("itl_ms", True),  # a bool is not a latency
        ("output_tokens", 0),  # a completion has at least one token
        ("max_num_seqs", 0),  # no slot means nothing ever runs
        ("max_num_seqs", 2.5),  # slots are whole
        ("num_kv_blocks", -3),
        ("block_size", False),
        ("max_num_batched_tokens", 0),
        ("enable_prefix_caching", 1),  # a flag is true or false, not a number
    ],
)
def test_rejects_bad_knob_naming_field_and_value(field: str, value: object) -> None:
    with pytest.raises(ValueError) as error:
        SimConfig(**{field: value})  # type: ignore[arg-type]

    assert str(error.value).startswith(f"{field} must be ")
    assert str(error.value).endswith(f", got {value!r}")


def test_accepts_zero_latencies_for_instant_simulation() -> None:
    config = SimConfig(ttft_base_ms=0, ttft_per_prompt_token_ms=0, itl_ms=0, itl_batch_factor=0)

    assert config.itl_ms == 0
