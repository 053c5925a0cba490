"""Early-exit drafting: the model's own first K layers, an exit head, the final norm and a reduced-vocabulary head.

Per step the drafter runs the pending token through layers ``[0, K)``, reads a draft distribution out of the
result (``final_norm(h_K @ W)`` through the LM head restricted to the head's vocabulary), and, while the gate is
confident, appends its argmax and repeats on that token, up to its own ``max_tokens`` and the step's budget. Every
row it ran is handed to the verifier (``Draft.hidden`` at ``exit_layer = K``, with their keys and values left in
the cache below K), so no lower layer is run twice. The last drafted token is left for the verifier to run.

When the gate is unsure of the first draft the step proposes nothing; the pending token's layers ``[0, K)`` are
still handed over, so a plain step costs only the draft head's readout more than a greedy step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from engine.spec.drafters import Draft, DraftState
from engine.spec.gate import Gate
from engine.spec.heads import ExitHead
from engine.spec.runner import Runner, VocabHead

DEFAULT_MAX_TOKENS = 2


class EarlyExitDrafter:
    """Drafts with ``head`` (its ``exit_layer`` is K, ``1 <= K < layers``) for any runner of the model it was
    fitted on; the head is cast to the runner's dtype once per runner. ``max_tokens`` caps drafts below the loop's
    budget: at the agreement rates an exit head reaches, long drafts cost more than they gain (see the notes)."""

    def __init__(self, head: ExitHead, gate: Gate | None = None, max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
        self.head = head
        self.gate = gate or Gate.default()
        self.max_tokens = max_tokens
        self._bound: tuple[Runner, torch.Tensor, VocabHead] | None = None

    def _bind(self, runner: Runner) -> tuple[torch.Tensor, VocabHead]:
        if self._bound is None or self._bound[0] is not runner:
            if not 1 <= self.head.exit_layer < runner.num_layers:
                raise ValueError(f"exit layer {self.head.exit_layer} is not in [1, {runner.num_layers})")
            head = self.head.to(runner.weights.dtype, runner.device)
            self._bound = (runner, head.weight, runner.reduced_head(head.vocab))
        return self._bound[1], self._bound[2]

    def propose(self, context_ids: Sequence[int], state: DraftState) -> Draft:
        runner = state.runner
        weight, vocab_head = self._bind(runner)
        exit_layer = self.head.exit_layer
        budget = min(self.max_tokens, state.max_tokens)
        if budget == 0:
            return Draft()
        token, position = context_ids[-1], state.position
        rows: list[torch.Tensor] = []
        tokens: list[int] = []
        while len(tokens) < budget:
            hidden = runner.run_layers(runner.embed([token]), position, 0, exit_layer)
            rows.append(hidden)
            logits = runner.logits(hidden @ weight, vocab_head)
            if not self.gate.confident(logits):
                break
            token = int(vocab_head.tokens(logits.argmax(-1))[0])
            tokens.append(token)
            position += 1
        return Draft(tokens, exit_layer, torch.cat(rows))
