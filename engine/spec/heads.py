"""Exit heads for early-exit drafting: a linear map from the residual stream at layer K to a guess of the last
layer's, fitted on the model's own generations, and saved as a versioned artifact.

A draft token is ``argmax(final_norm(h_K @ W) @ lm_head[vocab].T)``: the head ``W`` (``[hidden, hidden]``) is
applied, then the model's own final norm, then its LM head restricted to the draft vocabulary ``vocab`` (the most
frequent tokens of the calibration data), which is what makes a draft step cheap. ``W = I`` is the *logit lens*,
the baseline every fitted head must beat.

Two fits:

* ``lsq``: the closed-form ridge regression of ``h_L`` on ``h_K`` (the original design, and the initialisation of
  the next). It matches hidden states, not decisions, which is why it agrees with the model on few tokens.
* ``distill``: ``W`` trained with Adam to minimise ``KL(full ‖ draft)`` where both distributions are softmaxes over
  the draft vocabulary, ``full`` from the model's own final logits. It optimises what drafting needs.

An artifact is a directory holding ``exit-head.safetensors`` (``weight``, ``vocab``) and ``exit-head.json`` (the
:class:`HeadMetadata`); loading checks the format version and the model hash so a head is never used on another
model.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from engine.spec.layers import rms_norm
from engine.spec.models.smollm2 import METADATA as SMOLLM2_METADATA

HeadKind = Literal["identity", "lsq", "distill"]
FORMAT_VERSION = 1
WEIGHTS_FILE = "exit-head.safetensors"
METADATA_FILE = "exit-head.json"
DEFAULT_VOCAB = 8192
DEFAULT_RIDGE = 1e-3


@dataclass(frozen=True)
class ExitHead:
    """``weight`` ``[hidden, hidden]`` maps ``h_K`` (row vectors) to the guessed ``h_L``; ``vocab`` (int64, sorted
    ascending so that argmax ties go to the lowest id, as in greedy decoding) is the draft vocabulary."""

    weight: torch.Tensor
    vocab: torch.Tensor
    exit_layer: int

    def to(self, dtype: torch.dtype, device: torch.device | str = "cpu") -> ExitHead:
        return ExitHead(self.weight.to(dtype=dtype, device=device).contiguous(), self.vocab.to(device), self.exit_layer)


@dataclass(frozen=True)
class HeadMetadata:
    """What an artifact records about its head. ``heldout_alpha`` is the share of held-out positions where the
    draft's top token is the full model's greedy token; ``None`` when no held-out set was evaluated."""

    format_version: int
    model_hash: str
    exit_layer: int
    kind: str
    vocab_size: int
    hidden_size: int
    calibration_prompts: int
    calibration_positions: int
    heldout_positions: int
    heldout_alpha: float | None


@dataclass(frozen=True)
class States:
    """Calibration positions: ``h_k`` and ``h_l`` (``[n, hidden]``, fp32) are the residual stream entering layer K
    and leaving the last layer (before the final norm); ``target`` (``[n]``) is the full model's argmax token."""

    h_k: torch.Tensor
    h_l: torch.Tensor
    target: torch.Tensor

    def __len__(self) -> int:
        return int(self.target.shape[0])


@dataclass(frozen=True)
class Readout:
    """The model's parts a head is read out through, in fp32: final norm weight and eps, and the full LM head."""

    final_norm: torch.Tensor
    eps: float
    lm_head: torch.Tensor

    def logits(self, hidden: torch.Tensor, vocab: torch.Tensor | None = None) -> torch.Tensor:
        head = self.lm_head if vocab is None else self.lm_head[vocab]
        return F.linear(rms_norm(hidden, self.final_norm, self.eps), head)


@dataclass(frozen=True)
class Evaluation:
    """Held-out quality of a head: agreement ``alpha`` with the full model's token, mean ``kl`` (full ‖ draft over
    the draft vocabulary, nats) and mean squared error of the projected hidden state against ``h_L``."""

    alpha: float
    kl: float
    mse: float


def draft_vocab(sequences: Iterable[Sequence[int]], size: int, vocab_size: int) -> torch.Tensor:
    """The ``size`` most frequent token ids of ``sequences`` (ties to the lower id), topped up with the lowest ids
    not seen when fewer distinct tokens occur (in BPE vocabularies low ids are the early, common merges); sorted
    ascending. Raises ``ValueError`` when ``size`` is not in ``[1, vocab_size]``."""
    if not 1 <= size <= vocab_size:
        raise ValueError(f"draft vocabulary size {size} is not in [1, {vocab_size}]")
    counts = Counter(token for sequence in sequences for token in sequence)
    chosen = [token for token, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:size]]
    seen = set(chosen)
    filler = (token for token in range(vocab_size) if token not in seen)
    while len(chosen) < size:
        chosen.append(next(filler))
    return torch.tensor(sorted(chosen), dtype=torch.int64)


def identity_head(hidden_size: int, vocab: torch.Tensor, exit_layer: int) -> ExitHead:
    """The logit lens: ``h_K`` read out as if it were the last layer's."""
    return ExitHead(torch.eye(hidden_size), vocab, exit_layer)


def fit_lsq(states: States, vocab: torch.Tensor, exit_layer: int, ridge: float = DEFAULT_RIDGE) -> ExitHead:
    """The closed-form ridge fit ``W = (XᵀX + λI)⁻¹ XᵀY`` with ``X = h_k``, ``Y = h_l``, in float64.

    ``λ = ridge · trace(XᵀX) / hidden`` so that ``ridge`` is relative to the mean eigenvalue and means the same for
    models whose residual streams differ in scale."""
    x = states.h_k.to(torch.float64)
    y = states.h_l.to(torch.float64)
    gram = x.T @ x
    lam = ridge * float(gram.diagonal().mean())
    gram.diagonal().add_(lam)
    weight = torch.linalg.solve(gram, x.T @ y)
    return ExitHead(weight.to(torch.float32), vocab, exit_layer)


def _kl(full_logits: torch.Tensor, draft_logits: torch.Tensor) -> torch.Tensor:
    """Per-row ``KL(softmax(full) ‖ softmax(draft))``."""
    log_p = torch.log_softmax(full_logits, dim=-1)
    log_q = torch.log_softmax(draft_logits, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def fit_distill(
    states: States,
    readout: Readout,
    init: ExitHead,
    epochs: int = 4,
    lr: float = 1e-3,
    batch_size: int = 256,
    seed: int = 0,
) -> ExitHead:
    """``W`` trained from ``init`` (normally the lsq head) with Adam on mean ``KL(full ‖ draft)`` over
    ``init.vocab``, ``full`` being the model's logits at ``h_l`` restricted to that vocabulary. The full logits are
    recomputed per batch from ``h_l`` rather than stored, since ``positions x vocab`` floats would not fit memory
    for real calibration sets. Shuffling is seeded, so a fit is reproducible."""
    weight = init.weight.detach().clone().to(torch.float32).requires_grad_(True)
    head_rows = readout.lm_head[init.vocab]
    optimizer = torch.optim.Adam([weight], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    count = len(states)
    for _ in range(epochs):
        order = torch.randperm(count, generator=generator)
        for begin in range(0, count, batch_size):
            batch = order[begin : begin + batch_size]
            with torch.no_grad():
                full = F.linear(rms_norm(states.h_l[batch], readout.final_norm, readout.eps), head_rows)
            draft = F.linear(rms_norm(states.h_k[batch] @ weight, readout.final_norm, readout.eps), head_rows)
            loss = _kl(full, draft).mean()
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            optimizer.step()
    return ExitHead(weight.detach(), init.vocab, init.exit_layer)


def evaluate(head: ExitHead, states: States, readout: Readout, batch_size: int = 1024) -> Evaluation:
    """Held-out quality of ``head`` on ``states`` (see :class:`Evaluation`). Raises ``ValueError`` for no states."""
    if not len(states):
        raise ValueError("no positions to evaluate on")
    agree = kl = sq = 0.0
    with torch.no_grad():
        for begin in range(0, len(states), batch_size):
            rows = slice(begin, begin + batch_size)
            projected = states.h_k[rows] @ head.weight.to(torch.float32)
            draft = readout.logits(projected, head.vocab)
            full = readout.logits(states.h_l[rows], head.vocab)
            agree += float((head.vocab[draft.argmax(-1)] == states.target[rows]).sum())
            kl += float(_kl(full, draft).sum())
            sq += float((projected - states.h_l[rows]).pow(2).mean(-1).sum())
    n = len(states)
    return Evaluation(alpha=agree / n, kl=kl / n, mse=sq / n)


def model_hash(directory: Path) -> str:
    """A SHA-256 naming a checkpoint's weights: from the SmolLM2 cache's metadata when present (no rehashing of
    the weights), otherwise over the ``*.safetensors`` files themselves."""
    metadata = directory / SMOLLM2_METADATA
    digest = hashlib.sha256()
    if metadata.is_file():
        hashes = json.loads(metadata.read_text(encoding="utf-8"))["safetensors_sha256"]
        digest.update(json.dumps(hashes, sort_keys=True).encode())
        return digest.hexdigest()
    for path in sorted(directory.glob("*.safetensors")):
        digest.update(path.name.encode())
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def save_head(directory: Path, head: ExitHead, metadata: HeadMetadata) -> None:
    """Writes the artifact; the metadata goes last so that a half-written directory does not load."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / METADATA_FILE).unlink(missing_ok=True)
    tensors = {"weight": head.weight.to(torch.float32).contiguous(), "vocab": head.vocab.contiguous()}
    save_file(tensors, str(directory / WEIGHTS_FILE))
    (directory / METADATA_FILE).write_text(json.dumps(asdict(metadata), indent=2, sort_keys=True) + "\n", "utf-8")


def load_head(directory: Path, expected_model_hash: str | None = None) -> tuple[ExitHead, HeadMetadata]:
    """Reads an artifact (fp32). Raises ``ValueError`` for another format version, another model's hash (when
    ``expected_model_hash`` is given) or tensors that disagree with the metadata; ``FileNotFoundError`` when the
    directory holds no complete artifact."""
    raw = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))
    if raw.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"exit head format {raw.get('format_version')!r} is not {FORMAT_VERSION}")
    metadata = HeadMetadata(**raw)
    if expected_model_hash is not None and metadata.model_hash != expected_model_hash:
        raise ValueError(
            f"exit head in {directory} was fitted for model {metadata.model_hash[:12]}, not {expected_model_hash[:12]}"
        )
    tensors = load_file(str(directory / WEIGHTS_FILE))
    weight, vocab = tensors["weight"], tensors["vocab"]
    hidden = metadata.hidden_size
    if tuple(weight.shape) != (hidden, hidden) or tuple(vocab.shape) != (metadata.vocab_size,):
        raise ValueError(f"exit head tensors {tuple(weight.shape)}, {tuple(vocab.shape)} disagree with its metadata")
    return ExitHead(weight, vocab, metadata.exit_layer), metadata
