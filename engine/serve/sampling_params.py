"""The sampling fields of a completion request (the simulator's parser ignores them; a real model cannot).

``temperature`` (OpenAI's default 1), ``top_p`` and ``seed`` choose the acceptance rule: greedy at temperature 0,
speculative sampling above it, which keeps the output distributed exactly as the model's own samples. vLLM's
``ignore_eos`` is honoured (load tests use it for exact lengths). Fields that would change what the answer holds
and that this engine cannot honour (``stop``, ``logprobs``) are refused with a 400 rather than silently ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from engine.sim.errors import ApiError, invalid_request
from engine.sim.request_parsing import wrong_type
from engine.spec.sampling import AcceptanceRule, acceptance_rule

_SEED_RANGE = range(-(2**63), 2**64)  # what torch.Generator.manual_seed takes


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    ignore_eos: bool = False

    def rule(self) -> AcceptanceRule:
        """A fresh rule for one sequence (a seeded rule owns its random generator)."""
        return acceptance_rule(self.temperature, self.top_p, self.seed)


def parse_sampling_params(body: Mapping[str, object]) -> SamplingParams:
    temperature = _number(body, "temperature", 1.0)
    if temperature < 0:
        raise _out_of_range("temperature", "a number >= 0", temperature)
    top_p = _number(body, "top_p", 1.0)
    if not 0 < top_p <= 1:
        raise _out_of_range("top_p", "a number in (0, 1]", top_p)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed not in _SEED_RANGE):
        raise wrong_type("seed", "a 64-bit integer", seed)
    ignore_eos = body.get("ignore_eos", False)
    if not isinstance(ignore_eos, bool):
        raise wrong_type("ignore_eos", "a boolean", ignore_eos)
    for name in ("stop", "logprobs"):
        if body.get(name) not in (None, False, [], ""):
            raise invalid_request(f"{name} is not supported by this engine.", param=name, code="unsupported_value")
    return SamplingParams(float(temperature), float(top_p), seed, ignore_eos)


def _number(body: Mapping[str, object], name: str, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise wrong_type(name, "a finite number", value)
    return float(value)


def _out_of_range(name: str, expected: str, value: float) -> ApiError:
    return invalid_request(f"{name} must be {expected}, got {value!r}.", param=name)
