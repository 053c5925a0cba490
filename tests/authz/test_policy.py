from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authz.policy import Allow, Deny, Identified, content_length, credential, identify, judge, request_path
from authz.secrets import Rejection, Tenant, key_digest
from authz.snapshot import build_snapshot
from authz.tiers import TierPolicy
from tokenlabs.errors import BodyTooLarge, InvalidApiKey, PermissionDenied, RateLimited
from tokenlabs.quota.windows import Admission, Limit, WindowState

ACME = Tenant("acme", "pro", "ns/acme", key_digest("tlabs_sk_acme"))
BASIC = Tenant("basic", "basic", "ns/basic", key_digest("tlabs_sk_basic"))
BROKEN = Rejection("ns/broken", "unknown tier 'gold'", key_digest("tlabs_sk_broken"), "unknown_tier")
SNAPSHOT = build_snapshot([ACME, BASIC, BROKEN])
MINUTE = Limit("minute", 60, 10)
DAY = Limit("day", 86_400, 100)
POLICIES = MappingProxyType(
    {
        "pro": TierPolicy("pro", (MINUTE, DAY), None),
        "basic": TierPolicy("basic", (), frozenset({"/v1/chat/completions"})),
    }
)
CHAT = "/v1/chat/completions"


def check(key: str | None, length: int | None = 100, path: str = CHAT) -> Identified | Deny:
    return identify(key, length, path, SNAPSHOT, POLICIES, 1000)


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


header_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)


@given(authorization=header_text, api_key=header_text)
def test_credential_never_fails_and_never_returns_blank(authorization: str, api_key: str) -> None:
    key = credential({"authorization": authorization, "x-api-key": api_key})
    assert key is None or (key == key.strip() and key)
    if key is not None and authorization.strip().lower().startswith("bearer "):
        assert key in authorization


@given(token=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=60))
def test_any_bearer_token_round_trips(token: str) -> None:
    assert credential({"authorization": f"Bearer {token}"}) == token
    assert credential({"x-api-key": f" {token} "}) == token


@given(value=header_text)
def test_content_length_is_a_non_negative_int_or_none(value: str) -> None:
    parsed = content_length({"content-length": value})
    assert parsed is None or parsed == int(value.strip())


@pytest.mark.parametrize(
    ("value", "expected"), [("12", 12), (" 7 ", 7), ("-1", None), ("abc", None), ("", None), ("١٢", None)]
)
def test_content_length_parsing(value: str, expected: int | None) -> None:
    assert content_length({"content-length": value}) == expected


@pytest.mark.parametrize(
    ("path", "expected"), [("/v1/models?x=1", "/v1/models"), ("/v1/models#a", "/v1/models"), ("/a", "/a")]
)
def test_request_path_drops_query_and_fragment(path: str, expected: str) -> None:
    assert request_path(path) == expected


def test_known_key_is_identified_with_its_tier_policy() -> None:
    assert check("tlabs_sk_acme") == Identified(ACME, POLICIES["pro"])


@pytest.mark.parametrize(("key", "reason"), [(None, "missing_key"), ("tlabs_sk_wrong", "unknown_key")])
def test_missing_or_unknown_key_is_401(key: str | None, reason: str) -> None:
    decision = check(key)
    assert isinstance(decision, Deny)
    assert decision.reason == reason
    assert isinstance(decision.error, InvalidApiKey)


def test_a_key_whose_secret_was_refused_is_403_with_the_reason() -> None:
    decision = check("tlabs_sk_broken")
    assert isinstance(decision, Deny) and isinstance(decision.error, PermissionDenied)
    assert "unknown tier 'gold'" in decision.error.message
    assert "tlabs_sk_broken" not in decision.error.message


def test_tier_endpoint_policy_is_403() -> None:
    assert isinstance(check("tlabs_sk_basic"), Identified)
    decision = check("tlabs_sk_basic", path="/v1/audio/speech?x=1")
    assert isinstance(decision, Deny) and isinstance(decision.error, PermissionDenied)
    assert decision.reason == "endpoint_not_allowed"


def test_declared_oversized_body_is_413_after_authentication() -> None:
    decision = check("tlabs_sk_acme", 1001)
    assert isinstance(decision, Deny) and isinstance(decision.error, BodyTooLarge)
    assert isinstance(check("tlabs_sk_acme", 1000), Identified)
    # Without a declared length the body is bounded by Envoy's buffer filter instead.
    assert isinstance(check("tlabs_sk_acme", None), Identified)


def admission(admitted: bool, minute_used: int, day_used: int) -> Admission:
    return Admission(
        admitted,
        (
            WindowState(MINUTE, 1, minute_used, 12.5, fits=minute_used < 10 or admitted),
            WindowState(DAY, 1, day_used, 3600.0, fits=day_used < 100 or admitted),
        ),
    )


def test_allowed_answer_carries_the_binding_windows_headers() -> None:
    decision = judge(Identified(ACME, POLICIES["pro"]), admission(True, 3, 95))
    assert decision == Allow(
        ACME,
        (
            ("x-ratelimit-limit-requests", "100"),
            ("x-ratelimit-remaining-requests", "5"),
            ("x-ratelimit-reset-requests", "1h0m0s"),
        ),
    )


def test_refusal_is_429_with_retry_after_of_the_blocking_window() -> None:
    decision = judge(Identified(ACME, POLICIES["pro"]), admission(False, 10, 50))
    assert isinstance(decision, Deny) and isinstance(decision.error, RateLimited)
    assert decision.error.retry_after_s == 13
    assert "10 per minute" in decision.error.message
    assert ("x-ratelimit-remaining-requests", "0") in decision.headers
    assert ("x-ratelimit-reset-requests", "12.5s") in decision.headers


def test_a_tier_without_limits_is_allowed_without_headers() -> None:
    assert judge(Identified(BASIC, POLICIES["basic"]), None) == Allow(BASIC)
