"""The options of one torch worker, as ``tokenlabs engine serve`` takes them: one frozen object passed down."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final

from engine.spec.models.catalog import DTYPES, MODELS

SPEC_MODES: Final = ("none", "lookup", "early_exit", "hybrid")
# What vLLM would call the model when it is not renamed: the checkpoint's name.
DEFAULT_SERVED_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {"smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct", "tiny": "tiny-llama"}
)


@dataclass(frozen=True)
class ServeOptions:
    """``model`` picks the checkpoint (the cached SmolLM2, or the tiny random Llama); ``model_dir`` reads another
    Llama checkpoint directory instead. ``served_model_names`` are the names requests may use (aliases; the first
    labels the metrics), by default the model's. ``max_model_len`` is the KV cache's capacity: the longest prompt
    plus completion. ``spec_mode`` picks the drafter (``none`` decodes one token per step), ``head`` is the exit
    head artifact ``early_exit`` and ``hybrid`` need, ``max_draft`` the most tokens one step drafts; ``gate``
    (``KIND[:THRESHOLD]``, see :func:`engine.spec.gate.parse_gate`) and ``draft_len`` are early exit's."""

    model: str = "smollm2"
    model_dir: Path | None = None
    served_model_names: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8000
    dtype: str = "bf16"
    threads: int = 2
    spec_mode: str = "lookup"
    head: Path | None = None
    max_draft: int = 4
    gate: str = "entropy"
    draft_len: int = 2
    max_model_len: int = 2048
    drain_seconds: float = 10.0

    def __post_init__(self) -> None:
        _one_of("model", self.model, MODELS)
        _one_of("dtype", self.dtype, DTYPES)
        _one_of("spec_mode", self.spec_mode, SPEC_MODES)
        if not all(self.served_model_names):
            raise ValueError(f"served model names must not be empty, got {list(self.served_model_names)!r}")
        if not self.host:
            raise ValueError("host must not be empty")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        for name in ("threads", "max_draft", "draft_len", "max_model_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not 0 <= self.drain_seconds < math.inf:
            raise ValueError(f"drain_seconds must be a finite number >= 0, got {self.drain_seconds!r}")

    @property
    def model_names(self) -> tuple[str, ...]:
        """The names served: ``served_model_names``, else the model's default name."""
        return self.served_model_names or (DEFAULT_SERVED_NAMES[self.model],)


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
