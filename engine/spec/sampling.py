"""Sampling distributions from logits, and accepting drafted tokens without changing what would have been sampled.

At temperature 0 the target's choice is its argmax, so a draft is kept up to its first token that differs from
the target's argmax (:func:`greedy_accept`), and the output is token for token the greedy loop's.

At temperature > 0, speculative sampling (Leviathan et al. 2023, "Fast Inference from Transformers via Speculative
Decoding"; Chen et al. 2023, "Accelerating Large Language Model Decoding with Speculative Sampling") keeps the
output distribution exactly the target's (:func:`speculative_accept`). Drafted token ``x_i`` was sampled from the
draft distribution ``q_i``; the target gives ``p_i`` at the same position. Each ``x_i`` in turn is kept with
probability ``min(1, p_i(x_i) / q_i(x_i))``; at the first rejection the step emits a token sampled from the residual
``max(0, p_i - q_i)`` normalised, and ends; when every drafted token is kept it emits a bonus token sampled from
``p_k``. A token so emitted at position ``i`` is distributed as ``p_i`` for any ``q_i``, because
``min(p, q) + max(0, p - q) = p``. A deterministic drafter such as prompt lookup has ``q_i`` one-hot at ``x_i``: it
is kept with probability ``p_i(x_i)``, and the residual is ``p_i`` without ``x_i``.

``p`` and ``q`` must come from the same transform (:func:`probabilities` with the request's temperature and top-p)
over the same vocabulary, with ``q`` zero outside a reduced draft vocabulary.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

# How many of the most probable tokens top-p looks at before it falls back to sorting the whole vocabulary.
_NUCLEUS_PROBE = 64


@dataclass(frozen=True)
class Acceptance:
    """The outcome of verifying one draft.

    ``tokens`` are the tokens the step emits: the first ``accepted`` drafted tokens, then one token chosen by the
    target (the correction at the first rejection, or the bonus token when the whole draft was kept), so
    ``len(tokens) == accepted + 1``.
    """

    accepted: int
    tokens: list[int]


def probabilities(logits: torch.Tensor, temperature: float, top_p: float = 1.0) -> torch.Tensor:
    """``softmax(logits / temperature)`` over the last dimension, restricted to the top-p nucleus and renormalised.

    The nucleus is every token at least as probable as the token at which the cumulative mass, most probable first,
    reaches ``top_p``. Tokens tied with that one are all kept, so the nucleus does not depend on how a sort orders
    ties, and the most probable token is always in it. Computes in at least fp32. ``temperature`` must be finite and
    > 0 (at 0 use :func:`greedy_accept`), ``top_p`` in (0, 1]; otherwise ``ValueError``.
    """
    if isinstance(temperature, bool) or not (0 < temperature < math.inf):
        raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")
    if isinstance(top_p, bool) or not (0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    probs = torch.softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature, dim=-1)
    if top_p == 1:
        return probs
    # Sorting a 49k vocabulary costs milliseconds on a CPU; a nucleus usually lies within the top few dozen tokens,
    # so look there first and sort everything only when some row's nucleus reaches past them.
    ranked = torch.topk(probs, min(_NUCLEUS_PROBE, probs.shape[-1]), dim=-1).values
    cumulative = ranked.cumsum(dim=-1)
    if not bool((cumulative[..., -1] >= top_p).all().item()):
        ranked = torch.sort(probs, dim=-1, descending=True).values
        cumulative = ranked.cumsum(dim=-1)
    # Rounding can leave a row's total mass a hair under top_p; its last token then closes the nucleus.
    reached = (cumulative < top_p).sum(dim=-1, keepdim=True).clamp_max(ranked.shape[-1] - 1)
    kept = probs.masked_fill(probs < ranked.gather(-1, reached), 0.0)
    return kept / kept.sum(dim=-1, keepdim=True)


def greedy_accept(draft_tokens: Sequence[int] | torch.Tensor, target_logits: torch.Tensor) -> Acceptance:
    """Keep the longest prefix of the draft on which each token is the target's argmax.

    ``target_logits`` is shaped ``(k + 1, vocab)`` for ``k`` drafted tokens: row ``i`` is the target's logits after
    the context and the first ``i`` drafted tokens. The emitted token after the kept prefix is the argmax of the
    next row (``torch.argmax`` breaks ties towards the lowest id, as the greedy loop does).
    """
    draft = _token_list(draft_tokens)
    _check_rows("target_logits", target_logits, len(draft) + 1)
    choices: list[int] = target_logits.argmax(dim=-1).tolist()
    accepted = 0
    while accepted < len(draft) and draft[accepted] == choices[accepted]:
        accepted += 1
    return Acceptance(accepted, [*draft[:accepted], choices[accepted]])


def speculative_accept(
    draft_tokens: Sequence[int] | torch.Tensor,
    draft_probs: torch.Tensor | None,
    target_probs: torch.Tensor,
    generator: torch.Generator | None = None,
) -> Acceptance:
    """Speculative sampling of one step (see the module docstring): the emitted tokens are distributed as the target's.

    ``draft_tokens`` are ``k`` tokens, token ``i`` sampled from row ``i`` of ``draft_probs`` (``(k, vocab)``), or
    ``None`` for a deterministic drafter (one-hot rows). ``target_probs`` is ``(k + 1, vocab)``: row ``i`` is the
    target's distribution after the context and the first ``i`` drafted tokens. Rows need not be normalised exactly
    (the residual is renormalised); both should be fp32 or wider, as :func:`probabilities` returns. All randomness
    is drawn from ``generator`` (the default generator if ``None``), on ``target_probs``'s device, so a seeded
    generator makes the step reproducible.
    """
    draft = _token_list(draft_tokens)
    k = len(draft)
    _check_rows("target_probs", target_probs, k + 1)
    if draft_probs is not None:
        _check_rows("draft_probs", draft_probs, k)
        if draft_probs.shape[-1] != target_probs.shape[-1]:
            raise ValueError(
                f"draft_probs and target_probs must share the vocabulary, got {draft_probs.shape[-1]} and "
                f"{target_probs.shape[-1]} tokens"
            )
    device = target_probs.device
    positions = torch.arange(k, device=device)
    drafted = torch.tensor(draft, dtype=torch.long, device=device)
    p_drafted = target_probs[positions, drafted].double()
    # One draw for the k acceptance tests and the final sample; fp64 so that u * total stays below total.
    uniforms = torch.rand(k + 1, generator=generator, device=device, dtype=torch.float64)
    # Keep x with probability min(1, p/q): u < p/q for u uniform in [0, 1), written without dividing by a q of 0.
    if draft_probs is None:
        kept = uniforms[:k] < p_drafted
    else:
        kept = uniforms[:k] * draft_probs[positions, drafted].double() < p_drafted
    verdicts: list[bool] = kept.tolist()
    accepted = verdicts.index(False) if False in verdicts else k

    if accepted == k:
        weights = target_probs[k]
    elif draft_probs is None:
        weights = target_probs[accepted].clone()
        weights[draft[accepted]] = 0.0
    else:
        weights = (target_probs[accepted] - draft_probs[accepted]).clamp_min(0.0)
    cumulative = weights.double().cumsum(dim=0)
    # A rejection needs p(x) < q(x), which leaves the residual positive mass in exact arithmetic; rounding can still
    # empty it when p and q differ by a few ulps, and then p itself is the distribution the residual approximates.
    if not bool((cumulative[-1] > 0).item()):
        cumulative = target_probs[accepted].double().cumsum(dim=0)
    # Inverse-CDF sampling; torch.multinomial costs ~1 ms over a 49k vocabulary on a CPU, this ~0.05 ms. Searching
    # to the right never lands on a zero-weight token, whose cumulative value equals its predecessor's. The clamp
    # keeps the id in the vocabulary in the 2^-53 case where u * total rounds up to total.
    found = torch.searchsorted(cumulative, uniforms[k:] * cumulative[-1], right=True)
    token = int(found.clamp_max(cumulative.shape[0] - 1).item())
    return Acceptance(accepted, [*draft[:accepted], token])


def _token_list(tokens: Sequence[int] | torch.Tensor) -> list[int]:
    if isinstance(tokens, torch.Tensor):
        listed: list[int] = tokens.reshape(-1).tolist()
        return listed
    return list(tokens)


def _check_rows(name: str, tensor: torch.Tensor, rows: int) -> None:
    if tensor.dim() != 2 or tensor.shape[0] != rows:
        raise ValueError(f"{name} must be shaped ({rows}, vocab) for this draft, got {tuple(tensor.shape)}")


class AcceptanceRule(Protocol):
    """How the model's logits choose tokens: the first token after a prompt, and the outcome of a verified draft.

    ``accept`` gets ``(k + 1, vocab)`` logits for ``k`` drafted tokens (row ``i`` after the context and the first
    ``i`` of them) and returns ``Acceptance`` with ``accepted + 1`` tokens. Drafts are treated as deterministic
    proposals (one-hot draft distributions), which every drafter here is: they take their own argmax.
    """

    def first(self, logits: torch.Tensor) -> int:
        """The token after ``logits`` (one row, ``(vocab,)`` or ``(1, vocab)``)."""
        ...

    def accept(self, draft_tokens: Sequence[int], logits: torch.Tensor) -> Acceptance: ...


class GreedyRule:
    """Temperature 0: the argmax, lowest id on ties; the output is the greedy loop's token for token."""

    def first(self, logits: torch.Tensor) -> int:
        return int(logits.reshape(-1).argmax())

    def accept(self, draft_tokens: Sequence[int], logits: torch.Tensor) -> Acceptance:
        return greedy_accept(draft_tokens, logits)


class SamplingRule:
    """Temperature > 0 with top-p: every emitted token is distributed as the model's own sample would be
    (:func:`speculative_accept`), whatever was drafted. ``seed`` makes a sequence reproducible."""

    def __init__(self, temperature: float, top_p: float = 1.0, seed: int | None = None) -> None:
        probabilities(torch.zeros(1, 1), temperature, top_p)  # the same checks, at construction
        self.temperature = temperature
        self.top_p = top_p
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)

    def first(self, logits: torch.Tensor) -> int:
        return self.accept([], logits.reshape(1, -1)).tokens[0]

    def accept(self, draft_tokens: Sequence[int], logits: torch.Tensor) -> Acceptance:
        target = probabilities(logits.float(), self.temperature, self.top_p)
        return speculative_accept(draft_tokens, None, target, self.generator)


GREEDY: AcceptanceRule = GreedyRule()  # stateless, so one serves every sequence


def acceptance_rule(temperature: float, top_p: float = 1.0, seed: int | None = None) -> AcceptanceRule:
    """Greedy at temperature 0, speculative sampling above it."""
    if temperature == 0:
        return GREEDY
    return SamplingRule(temperature, top_p, seed)
