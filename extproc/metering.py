"""Usage metering: requests, tokens and cost by tenant and model, as Prometheus counters."""

from __future__ import annotations

from extproc.usage import Usage
from tokenlabs.settings import ModelSettings
from tokenlabs.telemetry import Telemetry


def cost_usd(usage: Usage, model: ModelSettings) -> float:
    return (
        usage.prompt_tokens * model.input_usd_per_1m_tokens + usage.completion_tokens * model.output_usd_per_1m_tokens
    ) / 1_000_000


class Metering:
    def __init__(self, telemetry: Telemetry) -> None:
        self._requests = telemetry.counter(
            "tokenlabs_requests",
            "Inference requests answered, by tenant, model and HTTP status.",
            ("tenant", "model", "code"),
        )
        self._tokens = telemetry.counter(
            "tokenlabs_tokens",
            "Tokens reported by workers' usage, by tenant, model and kind.",
            ("tenant", "model", "kind"),
        )
        self._cost = telemetry.counter(
            "tokenlabs_cost_usd", "Cost from per-model prices (USD), by tenant and model.", ("tenant", "model")
        )
        self._missing_usage = telemetry.counter(
            "tokenlabs_usage_missing",
            "Successful responses that carried no usage (nothing could be counted from them).",
            ("tenant", "model"),
        )

    def record(self, tenant: str, model: ModelSettings, status: int, usage: Usage | None) -> None:
        self._requests.add((tenant, model.name, str(status)))
        if usage is None:
            if 200 <= status < 300:
                self._missing_usage.add((tenant, model.name))
            return
        self._tokens.add((tenant, model.name, "prompt"), usage.prompt_tokens)
        self._tokens.add((tenant, model.name, "completion"), usage.completion_tokens)
        self._cost.add((tenant, model.name), cost_usd(usage, model))
