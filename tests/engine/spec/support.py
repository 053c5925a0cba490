"""Test drafters: they know the greedy reference, so each exercises one shape of draft deterministically."""

from __future__ import annotations

from collections.abc import Sequence

from engine.spec.drafters import Draft, DraftState


class OracleDrafter:
    """Proposes the greedy continuation itself (``reference``: the greedy tokens after a prompt of
    ``prompt_len``), optionally corrupting one token per step, at a position that cycles through the draft, so that
    accepted lengths vary from 0 to the whole draft. ``always_wrong`` corrupts every token."""

    def __init__(self, reference: Sequence[int], prompt_len: int, *, corrupt: bool = False, always_wrong: bool = False):
        self.reference = list(reference)
        self.prompt_len = prompt_len
        self.corrupt = corrupt
        self.always_wrong = always_wrong
        self.steps = 0

    def tokens(self, context_ids: Sequence[int], max_tokens: int) -> list[int]:
        done = len(context_ids) - self.prompt_len
        tokens = self.reference[done : done + max_tokens]
        self.steps += 1
        if self.always_wrong:
            return [token + 1 for token in tokens]
        if self.corrupt and tokens:
            bad = self.steps % (len(tokens) + 1)
            if bad < len(tokens):
                tokens[bad] += 1
        return tokens

    def propose(self, context_ids: Sequence[int], state: DraftState) -> Draft:
        return Draft(self.tokens(context_ids, state.max_tokens))


class EarlyExitProbe:
    """Drafts like ``source`` but hands over hidden states at ``exit_layer`` as an early-exit drafter would: it runs
    the first ``j`` rows of ``[pending] + tokens`` through layers ``[0, exit_layer)``, with ``j`` cycling through
    every allowed value, so that verify's own completion of the lower layers is exercised too."""

    def __init__(self, source: OracleDrafter, exit_layer: int):
        self.source = source
        self.exit_layer = exit_layer
        self.calls = 0

    def propose(self, context_ids: Sequence[int], state: DraftState) -> Draft:
        tokens = self.source.tokens(context_ids, state.max_tokens)
        rows = [context_ids[-1], *tokens]
        handed = self.calls % (len(rows) + 1)
        self.calls += 1
        if handed == 0:
            return Draft(tokens, self.exit_layer)
        runner = state.runner
        hidden = runner.run_layers(runner.embed(rows[:handed]), state.position, 0, self.exit_layer)
        return Draft(tokens, self.exit_layer, hidden)
