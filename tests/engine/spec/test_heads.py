"""Exit heads on the tiny model: fitted heads beat the logit lens on held-out positions; artifacts round-trip."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from engine.spec import calibration
from engine.spec.fitting import FitOptions, fit_head
from engine.spec.heads import (
    FORMAT_VERSION,
    HeadMetadata,
    Readout,
    States,
    draft_vocab,
    evaluate,
    fit_distill,
    fit_lsq,
    identity_head,
    load_head,
    model_hash,
    save_head,
)
from engine.spec.runner import Runner
from engine.spec.weights import ModelWeights

EXIT = 2


@pytest.fixture(scope="module")
def calibrated(
    tiny_dir: Path, tiny_weights: ModelWeights, tmp_path_factory: pytest.TempPathFactory
) -> tuple[States, States, torch.Tensor]:
    runner = Runner(tiny_weights, 256)
    train, heldout = calibration.split_prompts(40, 12)
    cache = tmp_path_factory.mktemp("calibration") / "tiny.jsonl"
    encode = calibration.chat_encoder(tiny_dir)
    sequences = calibration.generate_cached(runner, encode, train + heldout, 24, cache, progress=None)
    vocab = draft_vocab((s.prompt_ids + s.output_ids for s in sequences[:40]), 512, tiny_weights.config.vocab_size)
    return (
        calibration.collect_states(runner, sequences[:40], EXIT),
        calibration.collect_states(runner, sequences[40:], EXIT),
        vocab,
    )


@pytest.fixture(scope="module")
def readout(tiny_weights: ModelWeights) -> Readout:
    return calibration.readout_of(tiny_weights)


def test_prompt_splits_are_disjoint_and_the_heldout_set_is_stable() -> None:
    train, heldout = calibration.split_prompts(100, 20)
    assert not set(train) & set(heldout)
    assert calibration.split_prompts(10, 20)[1] == heldout
    with pytest.raises(ValueError):
        calibration.split_prompts(len(calibration.all_prompts()), 1)


def test_generation_resumes_from_its_cache(runner: Runner, tiny_dir: Path, tmp_path: Path) -> None:
    encode = calibration.chat_encoder(tiny_dir)
    prompts = calibration.split_prompts(3, 0)[0]
    cache = tmp_path / "c.jsonl"
    first = calibration.generate_cached(runner, encode, prompts[:2], 8, cache, progress=None)
    both = calibration.generate_cached(runner, encode, prompts, 8, cache, progress=None)
    assert both[:2] == first
    assert len(cache.read_text(encoding="utf-8").splitlines()) == 3


def test_draft_vocab_is_the_most_frequent_tokens_topped_up_with_low_ids() -> None:
    assert draft_vocab([[7, 7, 7, 5, 5, 9]], 2, 10).tolist() == [5, 7]
    assert draft_vocab([[7, 7, 9]], 4, 10).tolist() == [0, 1, 7, 9]
    with pytest.raises(ValueError):
        draft_vocab([[1]], 11, 10)


def test_fitted_heads_beat_the_logit_lens_on_heldout_positions(
    calibrated: tuple[States, States, torch.Tensor], readout: Readout
) -> None:
    train, heldout, vocab = calibrated
    hidden = train.h_k.shape[1]
    lens = evaluate(identity_head(hidden, vocab, EXIT), heldout, readout)
    lsq_head = fit_lsq(train, vocab, EXIT)
    lsq = evaluate(lsq_head, heldout, readout)
    distill = evaluate(fit_distill(train, readout, lsq_head, epochs=8), heldout, readout)
    assert lsq.mse < lens.mse
    assert lsq.kl < lens.kl
    assert distill.kl < lens.kl
    assert lsq.alpha > lens.alpha
    # Distillation optimises KL on the training positions: it must not lose there to its initialisation.
    assert evaluate(fit_distill(train, readout, lsq_head), train, readout).kl <= evaluate(lsq_head, train, readout).kl


def test_artifact_round_trip_and_model_check(
    calibrated: tuple[States, States, torch.Tensor], tiny_dir: Path, tmp_path: Path
) -> None:
    train, _, vocab = calibrated
    head = fit_lsq(train, vocab, EXIT)
    digest = model_hash(tiny_dir)
    metadata = HeadMetadata(
        format_version=FORMAT_VERSION,
        model_hash=digest,
        exit_layer=EXIT,
        kind="lsq",
        vocab_size=int(vocab.shape[0]),
        hidden_size=int(head.weight.shape[0]),
        calibration_prompts=40,
        calibration_positions=len(train),
        heldout_positions=0,
        heldout_alpha=None,
    )
    save_head(tmp_path, head, metadata)
    loaded, loaded_metadata = load_head(tmp_path, digest)
    assert loaded_metadata == metadata
    assert torch.equal(loaded.weight, head.weight) and torch.equal(loaded.vocab, vocab)
    assert loaded.exit_layer == EXIT
    with pytest.raises(ValueError, match="fitted for model"):
        load_head(tmp_path, "0" * 64)
    save_head(tmp_path, head, replace(metadata, vocab_size=3))
    with pytest.raises(ValueError, match="disagree"):
        load_head(tmp_path)


def test_fit_head_pipeline_saves_a_loadable_artifact_with_heldout_agreement(tiny_dir: Path, tmp_path: Path) -> None:
    options = FitOptions(
        model_dir=tiny_dir,
        exit_layer=EXIT,
        kind="distill",
        out=tmp_path / "head",
        cache=tmp_path / "cache",
        prompts=6,
        heldout=3,
        max_new_tokens=8,
        vocab_size=256,
        dtype=torch.float32,
    )
    report = fit_head(options, progress=None)
    assert set(report.heldout) == {"identity", "lsq", "distill"}
    head, metadata = load_head(options.out, model_hash(tiny_dir))
    assert metadata == report.metadata
    assert (metadata.kind, metadata.exit_layer, metadata.vocab_size) == ("distill", 2, 256)
    assert metadata.calibration_prompts == 6
    assert metadata.heldout_alpha == report.heldout["distill"].alpha
    # One position per generated token; a generation that hits EOS is shorter.
    assert 0 < metadata.calibration_positions <= 6 * 8
    assert head.weight.shape == (128, 128)
