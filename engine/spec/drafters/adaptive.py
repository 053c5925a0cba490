"""An acceptance floor for any drafter: stop drafting on a sequence where drafts keep being rejected.

A confidence gate judges one draft by its own distribution; it cannot see that on some texts the drafter is
confidently wrong (an exit head on a rewrite-this-paragraph prompt, whose answer copies the prompt, agrees with the
full model on few tokens). Each draft costs time, so below a break-even acceptance rate drafting makes decoding
slower than the greedy loop. The wrapper keeps an exponential moving average of the share of drafted tokens the
verifier kept, read from the context on the next call (the tokens after the pending one are exactly what was
accepted, then the bonus token), and while it is below ``floor`` proposes nothing, so those steps cost what a
greedy step costs; one step in ``probe_every`` still drafts, so the average recovers when the text changes.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.spec.drafters import Draft, Drafter, DraftState

DEFAULT_FLOOR = 0.2
DEFAULT_DECAY = 0.8
DEFAULT_PROBE_EVERY = 8


class AdaptiveDrafter:
    """Wraps ``inner`` for one sequence (a new wrapper per sequence, like :class:`LookupDrafter`).

    ``floor`` in [0, 1]: the acceptance below which drafting pauses; ``decay`` in [0, 1): the weight of the past in
    the average (0.8 remembers about five drafts); ``probe_every`` >= 1. The average starts at 1, so a sequence
    begins drafting. Raises ``ValueError`` for a parameter out of range.
    """

    def __init__(
        self,
        inner: Drafter,
        floor: float = DEFAULT_FLOOR,
        decay: float = DEFAULT_DECAY,
        probe_every: int = DEFAULT_PROBE_EVERY,
    ) -> None:
        if not 0 <= floor <= 1:
            raise ValueError(f"floor must be in [0, 1], got {floor!r}")
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay!r}")
        if probe_every < 1:
            raise ValueError(f"probe_every must be >= 1, got {probe_every!r}")
        self.inner = inner
        self.floor = floor
        self.decay = decay
        self.probe_every = probe_every
        self.acceptance = 1.0
        self.paused_steps = 0
        self._last: tuple[int, list[int]] | None = None  # (position of the pending token, drafted tokens)
        self._since_probe = 0

    def propose(self, context_ids: Sequence[int], state: DraftState) -> Draft:
        self._learn(context_ids)
        if self.acceptance < self.floor:
            self._since_probe += 1
            if self._since_probe < self.probe_every:
                self.paused_steps += 1
                return Draft()
        self._since_probe = 0
        draft = self.inner.propose(context_ids, state)
        self._last = (state.position, list(draft.tokens)) if draft.tokens else None
        return draft

    def _learn(self, context_ids: Sequence[int]) -> None:
        if self._last is None:
            return
        position, drafted = self._last
        self._last = None
        kept = context_ids[position + 1 : position + 1 + len(drafted)]
        accepted = 0
        while accepted < len(kept) and kept[accepted] == drafted[accepted]:
            accepted += 1
        self.acceptance = self.decay * self.acceptance + (1 - self.decay) * accepted / len(drafted)
