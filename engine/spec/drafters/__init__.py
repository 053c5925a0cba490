"""Drafters: cheap proposals of the next few tokens, which the full model then verifies.

The protocol, shared by every drafter (prompt lookup, early exit, hybrids):

* The speculative loop calls ``drafter.propose(context_ids, state)`` once per step. ``context_ids`` is the prompt
  plus every token accepted so far; its last token is the *pending* one: chosen by the model but not yet run
  through it, at position ``state.position``. Every layer of ``state.runner.cache`` holds exactly the positions
  ``[0, state.position)`` when ``propose`` is called.
* The drafter returns a :class:`Draft` of at most ``state.max_tokens`` tokens guessed to follow ``context_ids``.
  It may return none; the step is then a plain greedy step.
* A drafter that runs the model's own first layers (early exit) hands its work to the verifier instead of having
  it redone: ``Draft.hidden`` holds the residual stream entering layer ``Draft.exit_layer`` for the first ``j``
  rows of ``[pending] + tokens`` (``0 <= j <= len(tokens) + 1``), and the drafter has left those rows' keys and
  values in the cache for layers ``[0, exit_layer)``, at positions ``[position, position + j)``. The verifier
  runs the remaining rows through ``[0, exit_layer)`` itself and then all rows through ``[exit_layer, L)``.
  A drafter that runs no layers (lookup) leaves ``exit_layer = 0`` and ``hidden = None``: verification then runs
  every layer.
* The verifier, not the drafter, rolls the cache back to the accepted prefix afterwards, in every layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the pure drafters (lookup) and their tests need no torch
    import torch

    from engine.spec.runner import Runner


@dataclass(frozen=True)
class DraftState:
    """What a drafter may use besides the context: the model (to run layers of it) and the step's budget."""

    runner: Runner
    position: int
    max_tokens: int


@dataclass(frozen=True)
class Draft:
    """Proposed tokens, and for early exit the hidden states at ``exit_layer`` handed to the verifier."""

    tokens: list[int] = field(default_factory=list)
    exit_layer: int = 0
    hidden: torch.Tensor | None = None


class Drafter(Protocol):
    def propose(self, context_ids: Sequence[int], state: DraftState) -> Draft:
        """A draft of at most ``state.max_tokens`` tokens to follow ``context_ids`` (see the module docstring)."""
        ...


class TokenDrafter:
    """Adapts a pure proposer over token ids, ``fn(context_ids, max_tokens) -> tokens`` (such as
    :func:`engine.spec.drafters.lookup.propose`), to the :class:`Drafter` protocol. It runs no layers."""

    def __init__(self, fn: Callable[[Sequence[int], int], list[int]]) -> None:
        self._fn = fn

    def propose(self, context_ids: Sequence[int], state: DraftState) -> Draft:
        return Draft(self._fn(context_ids, state.max_tokens)[: state.max_tokens])
