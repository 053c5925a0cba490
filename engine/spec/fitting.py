"""The whole exit-head fit behind ``tokenlabs engine fit-head``: calibration data, states, fit, held-out check,
artifact. Each step lives in :mod:`engine.spec.calibration` and :mod:`engine.spec.heads`; this only sequences them.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch

from engine.spec import calibration
from engine.spec.heads import (
    DEFAULT_RIDGE,
    DEFAULT_VOCAB,
    FORMAT_VERSION,
    Evaluation,
    ExitHead,
    HeadKind,
    HeadMetadata,
    draft_vocab,
    evaluate,
    fit_distill,
    fit_lsq,
    identity_head,
    model_hash,
    save_head,
)
from engine.spec.runner import Runner
from engine.spec.weights import load_checkpoint


@dataclass(frozen=True)
class FitOptions:
    """``prompts`` training and ``heldout`` held-out prompts, each continued greedily for up to
    ``max_new_tokens``; the generations are cached under ``cache``, keyed by model hash, dtype and length."""

    model_dir: Path
    exit_layer: int
    kind: HeadKind
    out: Path
    cache: Path
    prompts: int = 200
    heldout: int = 40
    max_new_tokens: int = 96
    vocab_size: int = DEFAULT_VOCAB
    ridge: float = DEFAULT_RIDGE
    epochs: int = 4
    dtype: torch.dtype = torch.bfloat16


@dataclass(frozen=True)
class FitReport:
    """The saved artifact's metadata, held-out evaluations of the logit lens, the lsq head and (for ``distill``)
    the distilled head, and the wall seconds spent generating calibration text and fitting."""

    metadata: HeadMetadata
    heldout: dict[str, Evaluation]
    generate_s: float
    fit_s: float


def fit_head(options: FitOptions, progress: TextIO | None = sys.stderr) -> FitReport:
    """Runs the fit and saves the artifact into ``options.out``. Raises ``ValueError`` for a bad exit layer, a
    vocabulary larger than the model's, or more prompts than the templates make."""
    weights = load_checkpoint(options.model_dir, options.dtype)
    digest = model_hash(options.model_dir)
    train_prompts, heldout_prompts = calibration.split_prompts(options.prompts, options.heldout)
    encode = calibration.chat_encoder(options.model_dir)
    cache = calibration.cache_file(options.cache, digest, options.dtype, options.max_new_tokens)
    longest = max(len(encode(prompt)) for prompt in train_prompts + heldout_prompts)
    runner = Runner(weights, longest + options.max_new_tokens)
    started = time.monotonic()
    sequences = calibration.generate_cached(
        runner, encode, train_prompts + heldout_prompts, options.max_new_tokens, cache, progress
    )
    generate_s = time.monotonic() - started
    started = time.monotonic()
    train, heldout = sequences[: options.prompts], sequences[options.prompts :]
    vocab = draft_vocab((s.prompt_ids + s.output_ids for s in train), options.vocab_size, weights.config.vocab_size)
    train_states = calibration.collect_states(runner, train, options.exit_layer)
    readout = calibration.readout_of(weights)
    heads: dict[str, ExitHead] = {
        "identity": identity_head(weights.config.hidden_size, vocab, options.exit_layer),
        "lsq": fit_lsq(train_states, vocab, options.exit_layer, options.ridge),
    }
    if options.kind == "distill":
        heads["distill"] = fit_distill(train_states, readout, heads["lsq"], epochs=options.epochs)
    fit_s = time.monotonic() - started
    results: dict[str, Evaluation] = {}
    if heldout:
        heldout_states = calibration.collect_states(runner, heldout, options.exit_layer)
        results = {name: evaluate(head, heldout_states, readout) for name, head in heads.items()}
    chosen = results.get(options.kind)
    metadata = HeadMetadata(
        format_version=FORMAT_VERSION,
        model_hash=digest,
        exit_layer=options.exit_layer,
        kind=options.kind,
        vocab_size=int(vocab.shape[0]),
        hidden_size=weights.config.hidden_size,
        calibration_prompts=len(train),
        calibration_positions=len(train_states),
        heldout_positions=len(heldout_states) if heldout else 0,
        heldout_alpha=None if chosen is None else chosen.alpha,
    )
    save_head(options.out, heads[options.kind], metadata)
    return FitReport(metadata, results, generate_s, fit_s)
