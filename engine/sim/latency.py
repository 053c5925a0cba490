"""The latency model: how long prefill and each decode step take, as pure functions of the config and state."""

from engine.sim.config import SimConfig

_MS_PER_SECOND = 1000.0


def prefill_seconds(config: SimConfig, uncached_prompt_tokens: int) -> float:
    """Time from admission to the first token: a fixed cost plus a cost per prompt token that has to be
    computed; tokens found in a prefix cache cost nothing, which is why the caller passes only the rest."""
    return (config.ttft_base_ms + config.ttft_per_prompt_token_ms * uncached_prompt_tokens) / _MS_PER_SECOND


def inter_token_seconds(config: SimConfig, running: int) -> float:
    """Time between two tokens of one request. A decode step serves the whole batch, so it slows down by
    ``itl_batch_factor`` for each other request running alongside."""
    others = max(running, 1) - 1
    return config.itl_ms * (1.0 + config.itl_batch_factor * others) / _MS_PER_SECOND


def speech_seconds(config: SimConfig, characters: int) -> float:
    """Time to synthesize a whole speech answer: a fixed cost plus a cost per input character. The audio is
    sent in one piece, so there is no first-chunk latency to model separately."""
    return (config.speech_base_ms + config.speech_per_character_ms * characters) / _MS_PER_SECOND
