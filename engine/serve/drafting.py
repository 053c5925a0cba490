"""The drafter behind each ``--spec-mode``, built with the same factories ``tokenlabs engine bench`` uses.

A factory makes a fresh drafter per request: the lookup drafter (alone or in the hybrid) indexes one sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

from engine.spec.bench_modes import DrafterFactory, ModeSetup
from engine.spec.drafters import Drafter, TokenDrafter
from engine.spec.drafters.lookup import LookupDrafter
from engine.spec.exit_modes import early_exit_drafters, hybrid_drafters
from engine.spec.gate import parse_gate
from engine.spec.runner import Runner


def _no_drafts(setup: ModeSetup) -> DrafterFactory:
    # Every step is then a plain one-token step through the same loop, so the counters and metrics stay alike.
    drafter: Drafter = TokenDrafter(lambda context_ids, max_tokens: [])
    return lambda: drafter


def _lookup_drafters(setup: ModeSetup) -> DrafterFactory:
    return LookupDrafter


_FACTORIES: Final[Mapping[str, Callable[[ModeSetup], DrafterFactory]]] = MappingProxyType(
    {"none": _no_drafts, "lookup": _lookup_drafters, "early_exit": early_exit_drafters, "hybrid": hybrid_drafters}
)


def drafter_factory(
    spec_mode: str, runner: Runner, max_draft: int, head: Path | None, gate: str = "entropy", draft_len: int = 2
) -> DrafterFactory:
    """Raises ``KeyError`` for an unknown mode, ``ValueError`` for a bad ``gate`` and
    ``engine.spec.bench_modes.ModeUnavailableError`` for a mode that needs an exit head when ``head`` is None (or
    one that does not fit the model)."""
    return _FACTORIES[spec_mode](ModeSetup(runner, max_draft, head, parse_gate(gate), draft_len))
