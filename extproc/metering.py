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
        meter = telemetry.meter
        self._requests = meter.create_counter(
            "tokenlabs_requests", description="Inference requests answered, by tenant, model and HTTP status."
        )
        self._tokens = meter.create_counter(
            "tokenlabs_tokens", description="Tokens reported by workers' usage, by tenant, model and kind."
        )
        self._cost = meter.create_counter(
            "tokenlabs_cost_usd", description="Cost from per-model prices (USD), by tenant and model."
        )
        self._missing_usage = meter.create_counter(
            "tokenlabs_usage_missing",
            description="Successful responses that carried no usage (nothing could be counted from them).",
        )

    def record(self, tenant: str, model: ModelSettings, status: int, usage: Usage | None) -> None:
        labels = {"tenant": tenant, "model": model.name}
        self._requests.add(1, {**labels, "code": str(status)})
        if usage is None:
            if 200 <= status < 300:
                self._missing_usage.add(1, labels)
            return
        self._tokens.add(usage.prompt_tokens, {**labels, "kind": "prompt"})
        self._tokens.add(usage.completion_tokens, {**labels, "kind": "completion"})
        self._cost.add(cost_usd(usage, model), labels)
