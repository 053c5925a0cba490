"""The latency model, as pure functions of the config: how long the front end, an engine step and a speech
synthesis take."""

from engine.sim.config import SimConfig

_MS_PER_SECOND = 1000.0


def front_end_seconds(config: SimConfig) -> float:
    """The fixed part of the time to first token, spent before the request reaches the engine's queue, as vLLM's
    API server spends it on templating and tokenizing: it delays the request without holding up anyone else."""
    return config.ttft_base_ms / _MS_PER_SECOND


def step_seconds(config: SimConfig, num_decoding: int, num_prefill_tokens: int) -> float:
    """One engine step. A forward pass serves the whole batch, so it costs ``itl_ms`` and slows down by
    ``itl_batch_factor`` for each decoding sequence beyond the first; every prompt token it computes adds
    ``ttft_per_prompt_token_ms``, which is why other requests' prefills also stretch the inter-token latency.
    A step that only prefills still costs the base ``itl_ms``."""
    others = max(num_decoding, 1) - 1
    decode_ms = config.itl_ms * (1.0 + config.itl_batch_factor * others)
    return (decode_ms + config.ttft_per_prompt_token_ms * num_prefill_tokens) / _MS_PER_SECOND


def speech_seconds(config: SimConfig, characters: int) -> float:
    """Time to synthesize a whole speech answer: a fixed cost plus a cost per input character. The audio is
    sent in one piece, so there is no first-chunk latency to model separately."""
    return (config.speech_base_ms + config.speech_per_character_ms * characters) / _MS_PER_SECOND
