"""The metering ledger: totals by tenant and model, the tier as last seen, and snapshots readers can keep."""

import pytest

from extproc.metering import Metering, ModelTotals
from extproc.usage import Usage
from tokenlabs.settings import ModelSettings
from tokenlabs.telemetry import Telemetry

LLAMA = ModelSettings("llama", "pool", input_usd_per_1m_tokens=0.10, output_usd_per_1m_tokens=0.20)
VL = ModelSettings("vl", "pool", input_usd_per_1m_tokens=0.20, output_usd_per_1m_tokens=0.60)


@pytest.fixture
def metering() -> Metering:
    return Metering(Telemetry.create("metering-test"))


def test_totals_add_up_by_model_and_tenant(metering: Metering) -> None:
    metering.record("acme", LLAMA, 200, Usage(10, 4, 14), tier="pro")
    metering.record("acme", LLAMA, 200, Usage(5, 1, 6), tier="pro")
    metering.record("acme", VL, 200, Usage(100, 50, 150), tier="pro")
    metering.record("globex", LLAMA, 200, Usage(1, 1, 2), tier="free")

    acme = metering.totals("acme")
    assert acme is not None and acme.tier == "pro"
    llama, vl = acme.models["llama"], acme.models["vl"]
    assert (llama.requests, llama.prompt_tokens, llama.completion_tokens) == (2, 15, 5)
    assert llama.cost_usd == pytest.approx((15 * 0.10 + 5 * 0.20) / 1e6)
    assert (vl.requests, vl.prompt_tokens, vl.completion_tokens) == (1, 100, 50)
    assert vl.cost_usd == pytest.approx((100 * 0.20 + 50 * 0.60) / 1e6)
    assert (acme.requests, acme.prompt_tokens, acme.completion_tokens) == (3, 115, 55)
    assert acme.cost_usd == pytest.approx(llama.cost_usd + vl.cost_usd)
    assert set(metering.ledger()) == {"acme", "globex"}
    assert metering.totals("initech") is None


def test_a_response_without_usage_counts_a_request_and_nothing_else(metering: Metering) -> None:
    metering.record("acme", LLAMA, 502, None, tier="pro")
    metering.record("acme", LLAMA, 200, None, tier="pro")
    totals = metering.totals("acme")
    assert totals is not None and totals.models["llama"] == ModelTotals(requests=2)


def test_tier_is_the_last_one_seen_and_empty_keeps_it(metering: Metering) -> None:
    metering.record("acme", LLAMA, 200, None)
    first = metering.totals("acme")
    assert first is not None and first.tier == ""
    metering.record("acme", LLAMA, 200, None, tier="free")
    metering.record("acme", LLAMA, 200, None, tier="pro")
    metering.record("acme", LLAMA, 200, None)
    last = metering.totals("acme")
    assert last is not None and last.tier == "pro"


def test_snapshots_do_not_change_and_can_not_be_changed(metering: Metering) -> None:
    metering.record("acme", LLAMA, 200, Usage(1, 1, 2), tier="pro")
    ledger = metering.ledger()
    before = metering.totals("acme")
    metering.record("acme", LLAMA, 200, Usage(1, 1, 2), tier="pro")
    metering.record("globex", LLAMA, 200, None, tier="free")
    assert before is not None and before.requests == 1
    assert set(ledger) == {"acme"} and ledger["acme"].requests == 1
    with pytest.raises(TypeError):
        ledger["acme"].models["llama"] = ModelTotals()  # type: ignore[index]
    with pytest.raises(TypeError):
        ledger["globex"] = ledger["acme"]  # type: ignore[index]
