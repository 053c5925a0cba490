"""The knobs of a simulated worker: its latency model and its capacity."""

import math
from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class SimConfig:
    """Latency model and capacity of one simulated worker.

    The engine runs in steps, as vLLM's does: each step computes a chunk of prompt tokens for the sequences still
    in prefill and one token for every sequence decoding, and lasts
    ``itl_ms * (1 + itl_batch_factor * (decoding - 1)) + ttft_per_prompt_token_ms * prompt tokens computed``
    (with at least one decoding sequence counted, since a step that only prefills still costs a forward pass).
    Each field's ``help`` metadata doubles as the command line help, so the CLI derives its options from here.
    """

    ttft_base_ms: float = field(
        default=15.0,
        metadata={"help": "fixed part of the time to first token, spent before the request reaches the engine"},
    )
    ttft_per_prompt_token_ms: float = field(
        default=0.05, metadata={"help": "step time added per prompt token computed (prefix cache hits are free)"}
    )
    itl_ms: float = field(
        default=4.0, metadata={"help": "engine step time, the inter-token latency with a batch of one"}
    )
    itl_batch_factor: float = field(
        default=0.05,
        metadata={"help": "step time grows by this fraction for each decoding sequence beyond the first"},
    )
    output_tokens: int = field(
        default=16, metadata={"help": "completion length when the request sets no smaller max_tokens"}
    )
    max_num_seqs: int = field(default=8, metadata={"help": "requests running at once (continuous batching slots)"})
    max_num_batched_tokens: int = field(
        default=2048, metadata={"help": "tokens one engine step computes at most; longer prefills are chunked"}
    )
    num_kv_blocks: int = field(default=1024, metadata={"help": "KV cache capacity in blocks"})
    block_size: int = field(default=16, metadata={"help": "tokens per KV cache block"})
    enable_prefix_caching: bool = field(
        default=True, metadata={"help": "reuse cached KV blocks of earlier sequences that share a prefix"}
    )
    speech_base_ms: float = field(default=20.0, metadata={"help": "fixed part of the time to synthesize speech"})
    speech_per_character_ms: float = field(
        default=0.5, metadata={"help": "speech synthesis time added per input character"}
    )

    def __post_init__(self) -> None:
        for knob in fields(self):
            value = getattr(self, knob.name)
            if knob.type is bool:
                _require_bool(knob.name, value)
            elif knob.type is int:
                _require_positive_int(knob.name, value)
            else:
                _require_non_negative_number(knob.name, value)

    @property
    def max_model_len(self) -> int:
        """The longest sequence (prompt plus completion) that fits in the KV cache."""
        return self.num_kv_blocks * self.block_size


def _require_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")


def _require_positive_int(name: str, value: object) -> None:
    # bool is an int subclass, but True as a slot count is a caller's mistake, not a 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _require_non_negative_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
