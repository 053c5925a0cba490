"""Usage metering: requests, tokens and cost by tenant and model, as Prometheus counters and as a ledger the
usage service reads.

The ledger holds, per tenant, the tier of its last request and per model: requests answered (whatever their
status), prompt and completion tokens and cost from the usage the workers reported. It lives in this process's
memory: the totals are this extproc replica's since it started, and it grows with the tenants and models served.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from extproc.usage import Usage
from tokenlabs.settings import ModelKind, ModelSettings
from tokenlabs.telemetry import Telemetry


def cost_usd(usage: Usage, model: ModelSettings) -> float:
    """Speech is priced by input characters (carried as ``prompt_tokens``), chat by prompt and completion tokens."""
    if model.kind is ModelKind.SPEECH:
        return usage.prompt_tokens * model.input_usd_per_1m_characters / 1_000_000
    return (
        usage.prompt_tokens * model.input_usd_per_1m_tokens + usage.completion_tokens * model.output_usd_per_1m_tokens
    ) / 1_000_000


@dataclass(frozen=True)
class ModelTotals:
    """One tenant's use of one model."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def plus(self, usage: Usage | None, cost: float) -> ModelTotals:
        """These totals with one more request; a request without usage adds no tokens and no cost."""
        if usage is None:
            return ModelTotals(self.requests + 1, self.prompt_tokens, self.completion_tokens, self.cost_usd)
        return ModelTotals(
            self.requests + 1,
            self.prompt_tokens + usage.prompt_tokens,
            self.completion_tokens + usage.completion_tokens,
            self.cost_usd + cost,
        )


@dataclass(frozen=True)
class TenantTotals:
    """A snapshot of one tenant's ledger: its tier as last seen ("" if never told) and its totals by model."""

    tier: str
    models: Mapping[str, ModelTotals]

    @property
    def requests(self) -> int:
        return sum(totals.requests for totals in self.models.values())

    @property
    def prompt_tokens(self) -> int:
        return sum(totals.prompt_tokens for totals in self.models.values())

    @property
    def completion_tokens(self) -> int:
        return sum(totals.completion_tokens for totals in self.models.values())

    @property
    def cost_usd(self) -> float:
        return sum(totals.cost_usd for totals in self.models.values())


@dataclass
class _Account:
    tier: str = ""
    models: dict[str, ModelTotals] = field(default_factory=dict)

    def snapshot(self) -> TenantTotals:
        return TenantTotals(self.tier, MappingProxyType(dict(self.models)))


class Metering:
    def __init__(self, telemetry: Telemetry) -> None:
        self._requests = telemetry.counter(
            "tokenlabs_requests",
            "Inference requests answered, by tenant, model and HTTP status.",
            ("tenant", "model", "code"),
        )
        self._tokens = telemetry.counter(
            "tokenlabs_tokens",
            "Tokens reported by workers' usage (kind prompt/completion), or speech input characters (kind characters).",
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
        self._accounts: dict[str, _Account] = {}

    def record(self, tenant: str, model: ModelSettings, status: int, usage: Usage | None, *, tier: str = "") -> None:
        """Count one answered request. ``tier`` is the tenant's tier for this request; "" keeps the last known."""
        account = self._accounts.get(tenant)
        if account is None:
            account = self._accounts[tenant] = _Account()
        if tier:
            account.tier = tier
        cost = 0.0 if usage is None else cost_usd(usage, model)
        account.models[model.name] = account.models.get(model.name, ModelTotals()).plus(usage, cost)
        self._requests.add((tenant, model.name, str(status)))
        if usage is None:
            if 200 <= status < 300:
                self._missing_usage.add((tenant, model.name))
            return
        if model.kind is ModelKind.SPEECH:
            self._tokens.add((tenant, model.name, "characters"), usage.prompt_tokens)
        else:
            self._tokens.add((tenant, model.name, "prompt"), usage.prompt_tokens)
            self._tokens.add((tenant, model.name, "completion"), usage.completion_tokens)
        self._cost.add((tenant, model.name), cost)

    def totals(self, tenant: str) -> TenantTotals | None:
        """A snapshot of ``tenant``'s ledger; None if this replica has not recorded a request of it."""
        account = self._accounts.get(tenant)
        return None if account is None else account.snapshot()

    def ledger(self) -> Mapping[str, TenantTotals]:
        """A read-only snapshot of every tenant's ledger: later records do not change it."""
        return MappingProxyType({tenant: account.snapshot() for tenant, account in self._accounts.items()})
