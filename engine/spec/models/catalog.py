"""The models and dtypes the torch engine's commands (``engine bench``, ``engine fit-head``, ``engine serve``)
know by name, and where each model's checkpoint is. Importing this module needs no torch, so command lines can be
parsed without the ``engine`` extra."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import torch

MODELS: Final = ("smollm2", "tiny")
DTYPES: Final = ("bf16", "fp32")


def torch_dtype(name: str) -> torch.dtype:
    """``bf16`` or ``fp32`` as a torch dtype; ``ValueError`` for another name."""
    import torch

    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; known: {', '.join(DTYPES)}")
    return torch.bfloat16 if name == "bf16" else torch.float32


def model_directory(model: str, model_dir: Path | None = None) -> Path:
    """The checkpoint directory: ``model_dir`` if given, else the cached SmolLM2 (dequantized on first use; raises
    ``engine.spec.models.smollm2.ModelUnavailableError``, whose message says how to install it, when it cannot be)
    or the tiny random Llama, made on first use under the same cache root. ``ValueError`` for an unknown model."""
    if model_dir is not None:
        return model_dir
    from engine.spec.models.smollm2 import cache_dir, ensure_smollm2

    if model == "smollm2":
        return ensure_smollm2()
    if model == "tiny":
        from engine.spec.models.tiny import TinySpec, ensure_tiny

        return ensure_tiny(cache_dir().parent / "tiny-llama-bench", TinySpec(num_layers=4, initializer_range=0.1))
    raise ValueError(f"unknown model {model!r}; known: {', '.join(MODELS)}")
