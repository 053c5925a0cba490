import io
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tokenlabs.telemetry import JsonFormatter, Telemetry, redact


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer tlabs_pro_demo_key_change_me",
        "authorization=Bearer sk-anything-else",
        '{"api_key": "sk-12345"}',
        "x-api-key: abcdef",
        "key tlabs_sk_acme_9f8e7d was used",
    ],
)
def test_redact_removes_credentials(text: str) -> None:
    cleaned = redact(text)
    for secret in ("tlabs_pro_demo_key_change_me", "sk-anything-else", "sk-12345", "abcdef", "tlabs_sk_acme_9f8e7d"):
        assert secret not in cleaned
    assert "[redacted]" in cleaned


def test_json_logs_are_redacted_and_keep_extra_fields() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.telemetry")
    logger.addHandler(handler)
    logger.propagate = False
    logger.warning("header was Bearer tlabs_free_demo_key_change_me", extra={"tenant": "acme"})
    line = stream.getvalue()
    assert "tlabs_free_demo_key_change_me" not in line
    assert '"tenant":"acme"' in line and '"level":"warning"' in line


def test_each_telemetry_has_its_own_registry() -> None:
    first, second = Telemetry.create("one"), Telemetry.create("two")
    first.meter.create_counter("tokenlabs_test_things").add(2, {"kind": "a"})
    families = {family.name for family in text_string_to_metric_families(first.render().decode())}
    assert "tokenlabs_test_things" in families
    assert "tokenlabs_test_things" not in second.render().decode()
    first.shutdown()
    second.shutdown()


def test_counter_totals_are_exported_with_their_labels() -> None:
    telemetry = Telemetry.create("counting")
    picks = telemetry.counter("tokenlabs_test_picks", "Picks.", ("pool", "result"))
    picks.add(("llama", "picked"))
    picks.add(("llama", "picked"), 2)
    picks.add(("vl", "refused"))
    samples = {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(telemetry.render().decode())
        for sample in family.samples
        if sample.name == "tokenlabs_test_picks_total"
    }
    assert samples == {(("pool", "llama"), ("result", "picked")): 3.0, (("pool", "vl"), ("result", "refused")): 1.0}
    telemetry.shutdown()


def test_decisions_are_timed_into_one_histogram() -> None:
    telemetry = Telemetry.create("timing")
    telemetry.record_decision("check", "allow", 0.0002)
    text = telemetry.render().decode()
    assert 'tokenlabs_decision_duration_seconds_count{phase="check",result="allow",server="timing"} 1.0' in text
    telemetry.shutdown()
