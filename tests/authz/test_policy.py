import pytest

from authz.policy import Allow, Deny, content_length, credential, decide
from authz.secrets import Tenant, key_digest
from authz.snapshot import build_snapshot
from tokenlabs.errors import BodyTooLarge, InvalidApiKey

ACME = Tenant("acme", "pro", "ns/acme", key_digest("tlabs_sk_acme"))
SNAPSHOT = build_snapshot([ACME])


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"authorization": "Bearer tlabs_sk_acme"}, "tlabs_sk_acme"),
        ({"authorization": "bearer   tlabs_sk_acme  "}, "tlabs_sk_acme"),
        ({"x-api-key": "tlabs_sk_acme"}, "tlabs_sk_acme"),
        # A non-bearer Authorization falls back to x-api-key.
        ({"authorization": "Basic abc", "x-api-key": "k"}, "k"),
        ({"authorization": "Bearer "}, None),
        ({}, None),
    ],
)
def test_credential_extraction(headers: dict[str, str], expected: str | None) -> None:
    assert credential(headers) == expected


def test_known_key_is_allowed() -> None:
    assert decide("tlabs_sk_acme", 100, SNAPSHOT, 1000) == Allow(ACME)


@pytest.mark.parametrize(("key", "reason"), [(None, "missing_key"), ("tlabs_sk_wrong", "unknown_key")])
def test_missing_or_unknown_key_is_401(key: str | None, reason: str) -> None:
    decision = decide(key, 5000, SNAPSHOT, 1000)
    assert isinstance(decision, Deny)
    assert decision.reason == reason
    assert isinstance(decision.error, InvalidApiKey)


def test_declared_oversized_body_is_413_after_authentication() -> None:
    decision = decide("tlabs_sk_acme", 1001, SNAPSHOT, 1000)
    assert isinstance(decision, Deny) and isinstance(decision.error, BodyTooLarge)
    assert decide("tlabs_sk_acme", 1000, SNAPSHOT, 1000) == Allow(ACME)
    # Without a declared length the body is bounded by Envoy's buffer instead.
    assert decide("tlabs_sk_acme", None, SNAPSHOT, 1000) == Allow(ACME)


@pytest.mark.parametrize(("value", "expected"), [("12", 12), (" 7 ", 7), ("-1", None), ("abc", None), ("", None)])
def test_content_length_parsing(value: str, expected: int | None) -> None:
    assert content_length({"content-length": value}) == expected
