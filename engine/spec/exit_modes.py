"""The drafter factories of the ``early_exit`` and ``hybrid`` modes of ``tokenlabs engine bench`` (the table is in
``modes.py``). Both need a fitted exit head (``--head DIR``, an artifact of ``tokenlabs engine fit-head``) and use
the setup's gate (``--gate``), early-exit draft length (``--draft-len``) and acceptance floor
(``--acceptance-floor``, :mod:`engine.spec.drafters.adaptive`; 0, the default, is off), which each sequence
applies on its own.
"""

from __future__ import annotations

from engine.spec.bench_modes import DrafterFactory, ModeSetup, ModeUnavailableError
from engine.spec.drafters import Drafter
from engine.spec.drafters.adaptive import AdaptiveDrafter
from engine.spec.drafters.early_exit import EarlyExitDrafter
from engine.spec.drafters.hybrid import HybridDrafter
from engine.spec.heads import ExitHead, load_head


def _head(setup: ModeSetup) -> ExitHead:
    """The artifact's head, checked against the runner's shapes (the bench knows no model hash to check)."""
    if setup.head is None:
        raise ModeUnavailableError("early exit needs a fitted exit head: --head DIR (tokenlabs engine fit-head)")
    head, metadata = load_head(setup.head)
    if metadata.hidden_size != setup.runner.config.hidden_size:
        raise ModeUnavailableError(f"exit head in {setup.head} is for hidden size {metadata.hidden_size}")
    return head


def with_floor(drafter: Drafter, floor: float) -> Drafter:
    """``drafter`` behind an acceptance floor for one sequence, or as it is when ``floor`` is 0."""
    return AdaptiveDrafter(drafter, floor) if floor > 0 else drafter


def early_exit_drafters(setup: ModeSetup) -> DrafterFactory:
    head = _head(setup)
    # The exit drafter is stateless across sequences, so one serves all; the floor's average is per sequence.
    drafter = EarlyExitDrafter(head, setup.gate, setup.draft_len)

    def make() -> Drafter:
        return with_floor(drafter, setup.acceptance_floor)

    return make


def hybrid_drafters(setup: ModeSetup) -> DrafterFactory:
    head = _head(setup)

    def make() -> Drafter:
        early_exit = EarlyExitDrafter(head, setup.gate, setup.draft_len)
        return HybridDrafter(with_floor(early_exit, setup.acceptance_floor))

    return make
