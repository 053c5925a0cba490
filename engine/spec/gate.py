"""How sure a drafter is of its next token, and the gate that stops drafting when it is not.

A drafter's logits give a distribution ``p`` over its vocabulary; three measures of its spread, all 0 for a one-hot
distribution and larger when the drafter is less sure:

* ``entropy``: ``H = -sum p log p``, in nats. ``exp(H)`` is the effective number of choices, so a threshold of
  1.0 drafts only where the draft hesitates among at most ``e ≈ 2.7`` tokens. Bounded by ``log(vocab size)``.
* ``one_minus_pmax``: ``1 - max p``, in [0, 1). The draft's own estimate of the chance its top token is wrong; a
  threshold of 0.5 drafts where the top token holds at least half of the mass.
* ``varentropy``: the variance of the surprisal ``-log p`` under ``p``, in nats². It is 0 both for one-hot and for
  uniform distributions, so alone it cannot tell sure from unsure; it separates a peaked head with a long tail from
  a flat one, and is reported next to the other two.

Measured on SmolLM2-135M while sizing this engine, entropy and ``1 - max p`` gate about equally well and
varentropy alone poorly, hence entropy is the default. The default thresholds are starting points of the right
order, not tuned values: the sweep over K and gates measures the trade-off.

All measures take logits of any float dtype with the vocabulary on the last dimension, compute in at least fp32
from ``log_softmax`` (so bf16 logits and large logit magnitudes are safe), and treat tokens with ``-inf`` logits,
such as those masked out of a reduced vocabulary, as having probability 0.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple, cast, get_args

import torch

GateKind = Literal["entropy", "one_minus_pmax", "varentropy"]
GATE_KINDS: tuple[GateKind, ...] = get_args(GateKind)
DEFAULT_KIND: GateKind = "entropy"
DEFAULT_THRESHOLDS: Mapping[GateKind, float] = {"entropy": 1.0, "one_minus_pmax": 0.5, "varentropy": 2.0}


class Measures(NamedTuple):
    """All three measures of the same logits, each shaped ``logits.shape[:-1]``."""

    entropy: torch.Tensor
    one_minus_pmax: torch.Tensor
    varentropy: torch.Tensor


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    # bf16 keeps 8 bits of mantissa: summing a vocabulary of p log p terms in it would swamp the small ones.
    return torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)


def _entropy(log_p: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    # Where p is 0, log p is -inf and p log p would be NaN; its limit is 0.
    return -torch.where(p > 0, p * log_p, 0.0).sum(dim=-1)


def _varentropy(log_p: torch.Tensor, p: torch.Tensor, entropy: torch.Tensor) -> torch.Tensor:
    # The centred form sum p (log p + H)² avoids the cancellation of E[(log p)²] - H².
    centred = log_p + entropy.unsqueeze(-1)
    return torch.where(p > 0, p * centred * centred, 0.0).sum(dim=-1)


def _one_minus_pmax(p: torch.Tensor) -> torch.Tensor:
    # Summing the other tokens keeps the digits of a small 1 - p_max; subtracting from 1 cancels them, and so does
    # expm1 of log p_max, which log_softmax has already rounded to 0.
    return p.scatter(-1, p.argmax(dim=-1, keepdim=True), 0.0).sum(dim=-1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of ``softmax(logits)`` over the last dimension."""
    log_p = _log_probs(logits)
    return _entropy(log_p, log_p.exp())


def one_minus_pmax(logits: torch.Tensor) -> torch.Tensor:
    """``1 - max softmax(logits)`` over the last dimension."""
    return _one_minus_pmax(_log_probs(logits).exp())


def varentropy(logits: torch.Tensor) -> torch.Tensor:
    """Variance in nats² of the surprisal ``-log p`` under ``p = softmax(logits)`` over the last dimension."""
    log_p = _log_probs(logits)
    p = log_p.exp()
    return _varentropy(log_p, p, _entropy(log_p, p))


def measures(logits: torch.Tensor) -> Measures:
    """All three measures from one ``log_softmax``, for reporting."""
    log_p = _log_probs(logits)
    p = log_p.exp()
    h = _entropy(log_p, p)
    return Measures(entropy=h, one_minus_pmax=_one_minus_pmax(p), varentropy=_varentropy(log_p, p, h))


def measure(logits: torch.Tensor, kind: GateKind) -> torch.Tensor:
    """The measure named ``kind``, computed alone."""
    if kind == "entropy":
        return entropy(logits)
    if kind == "one_minus_pmax":
        return one_minus_pmax(logits)
    return varentropy(logits)


@dataclass(frozen=True)
class Gate:
    """Draft while the drafter's uncertainty ``measure(logits, kind)`` is at most ``threshold``.

    ``threshold`` is a number >= 0 in the measure's unit (see the module docstring); ``math.inf`` never stops
    drafting, which is the ungated baseline. Construction raises ``ValueError`` naming the bad field.
    """

    kind: GateKind
    threshold: float

    def __post_init__(self) -> None:
        _check_kind("kind", self.kind)
        _check_threshold("threshold", self.threshold)

    @classmethod
    def default(cls, kind: GateKind = DEFAULT_KIND) -> "Gate":
        return cls(kind, DEFAULT_THRESHOLDS[kind])

    def confident(self, logits: torch.Tensor) -> bool:
        """Whether to draft from one distribution: ``logits`` shaped ``(vocab,)`` or with leading dims of size 1.

        Raises ``ValueError`` for logits that hold more than one distribution; use ``confident_batch`` for those.
        """
        if math.prod(logits.shape[:-1]) != 1:
            raise ValueError(f"confident takes one distribution, got logits shaped {tuple(logits.shape)}")
        return bool(self.confident_batch(logits).item())

    def confident_batch(self, logits: torch.Tensor) -> torch.Tensor:
        """Whether to draft, per distribution: a bool tensor shaped ``logits.shape[:-1]``."""
        return measure(logits, self.kind) <= self.threshold


def gate_from_config(config: object, where: str = "gate") -> Gate:
    """A ``Gate`` from a config mapping such as ``{"kind": "entropy", "threshold": 1.0}``.

    ``kind`` defaults to entropy and ``threshold`` to the kind's default. Raises ``ValueError`` whose message names
    the offending key as ``{where}.{key}``, for an unknown key, an unknown kind or a threshold that is not a number
    >= 0 (YAML's ``.inf`` is one; strings are not coerced).
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"{where} must be a mapping with keys kind, threshold; got {config!r}")
    for key in config:
        if key not in ("kind", "threshold"):
            raise ValueError(f"{where}.{key} is not a gate setting; the settings are kind, threshold")
    kind = config.get("kind", DEFAULT_KIND)
    _check_kind(f"{where}.kind", kind)
    kind = cast(GateKind, kind)
    threshold = config.get("threshold", DEFAULT_THRESHOLDS[kind])
    _check_threshold(f"{where}.threshold", threshold)
    return Gate(kind, float(cast(float, threshold)))


def parse_gate(text: str, where: str = "--gate") -> Gate:
    """A ``Gate`` from ``KIND`` or ``KIND:THRESHOLD`` (``entropy:1.5``, ``one_minus_pmax:inf``); errors as
    :func:`gate_from_config`'s, plus a threshold that is not a number."""
    kind, _, threshold = text.partition(":")
    if not threshold:
        return gate_from_config({"kind": kind}, where)
    try:
        value = float(threshold)
    except ValueError:
        raise ValueError(f"{where} threshold must be a number >= 0 or inf; got {threshold!r}") from None
    return gate_from_config({"kind": kind, "threshold": value}, where)


def _check_kind(name: str, value: object) -> None:
    if value not in GATE_KINDS:
        raise ValueError(f"{name} must be one of {', '.join(GATE_KINDS)}; got {value!r}")


def _check_threshold(name: str, value: object) -> None:
    # bool is an int subclass, but true as a threshold is a config mistake, not a 1.
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be a number >= 0 (inf never stops drafting); got {value!r}")
