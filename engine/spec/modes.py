"""The one table of ``tokenlabs engine bench`` modes: ``greedy`` (the baseline) and each drafter's speculative loop."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from engine.spec.bench_modes import GREEDY, Generate, ModeBuilder, ModeSetup, drafter_mode, greedy_mode
from engine.spec.drafters.lookup import LookupDrafter
from engine.spec.exit_modes import early_exit_drafters, hybrid_drafters

MODES: Final[Mapping[str, ModeBuilder]] = MappingProxyType(
    {
        GREEDY: greedy_mode,
        "lookup": drafter_mode(lambda setup: LookupDrafter),
        "early_exit": drafter_mode(early_exit_drafters),
        "hybrid": drafter_mode(hybrid_drafters),
    }
)


def mode_names() -> list[str]:
    """Every mode, ``greedy`` first."""
    return list(MODES)


def build_mode(name: str, setup: ModeSetup) -> Generate:
    """The mode's generate function. Raises ``KeyError`` for an unknown mode and ``ModeUnavailableError`` for one
    that cannot be built with ``setup`` (early exit without a head)."""
    if name not in MODES:
        raise KeyError(f"unknown mode {name!r}; known: {', '.join(MODES)}")
    return MODES[name](setup)
