"""The checkpoint a worker serves: where it is, its weights in the serving dtype, its tokenizer and end tokens."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.spec.models.catalog import torch_dtype
from engine.spec.weights import ModelWeights, load_checkpoint


@dataclass(frozen=True)
class LoadedModel:
    """``tokenizer`` is a transformers tokenizer; ``eos_ids`` are the tokens that end a generation (the
    checkpoint's and the tokenizer's end-of-sequence tokens, as the benchmark takes them)."""

    directory: Path
    weights: ModelWeights
    tokenizer: Any
    eos_ids: frozenset[int]

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of ``token_ids`` as a client sees it: special tokens (the end token) left out, spaces as they are."""
        text: str = self.tokenizer.decode(list(token_ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return text


def load_model(directory: Path, dtype: str) -> LoadedModel:
    """Loads the checkpoint in ``directory`` in ``dtype`` (``bf16`` or ``fp32``). Raises ``FileNotFoundError`` (or
    another ``OSError``) when it is not a checkpoint and ``ValueError`` for one the decode core cannot run."""
    from transformers import AutoTokenizer

    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory} is not a model checkpoint: it has no config.json")
    weights = load_checkpoint(directory, torch_dtype(dtype))
    tokenizer: Any = AutoTokenizer.from_pretrained(directory)
    eos = set(weights.config.eos_token_ids)
    if tokenizer.eos_token_id is not None:
        eos.add(int(tokenizer.eos_token_id))
    return LoadedModel(directory, weights, tokenizer, frozenset(eos))
