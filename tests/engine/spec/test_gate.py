import math

import pytest
import torch

from engine.spec.gate import (
    DEFAULT_THRESHOLDS,
    GATE_KINDS,
    Gate,
    GateKind,
    entropy,
    gate_from_config,
    measure,
    measures,
    one_minus_pmax,
    varentropy,
)


def float64_measures(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The textbook formulas in float64, the yardstick for the fp32 ones."""
    p = torch.softmax(logits.double(), dim=-1)
    surprisal = -torch.log(p)
    h = (p * surprisal).sum(-1)
    return h, 1 - p.amax(-1), (p * surprisal**2).sum(-1) - h**2


def test_uniform_distribution() -> None:
    logits = torch.zeros(8)

    assert entropy(logits).item() == pytest.approx(math.log(8))
    assert one_minus_pmax(logits).item() == pytest.approx(7 / 8)
    assert varentropy(logits).item() == pytest.approx(0, abs=1e-6)


def test_two_point_distribution_has_the_closed_form_varentropy() -> None:
    a = 0.9
    logits = torch.tensor([math.log(a), math.log(1 - a)])

    assert entropy(logits).item() == pytest.approx(-(a * math.log(a) + (1 - a) * math.log(1 - a)), rel=1e-5)
    assert one_minus_pmax(logits).item() == pytest.approx(1 - a, rel=1e-5)
    assert varentropy(logits).item() == pytest.approx(a * (1 - a) * math.log(a / (1 - a)) ** 2, rel=1e-5)


def test_masked_tokens_count_as_probability_zero() -> None:
    # A reduced draft vocabulary masks tokens with -inf; 0 · log 0 must not turn into NaN.
    one_hot = torch.tensor([-math.inf, 3.0, -math.inf, -math.inf])
    half = torch.tensor([-math.inf, 0.0, 0.0, -math.inf])

    assert [value.item() for value in measures(one_hot)] == [0.0, 0.0, 0.0]
    got = measures(half)
    assert (got.entropy.item(), got.one_minus_pmax.item()) == pytest.approx((math.log(2), 0.5))
    assert got.varentropy.item() == pytest.approx(0, abs=1e-7)


def test_a_tiny_one_minus_pmax_keeps_its_digits() -> None:
    # In fp32, 1 - exp(log p_max) would round to 0 here.
    logits = torch.tensor([20.0, 0.0, 0.0])
    expected = 2 * math.exp(-20) / (1 + 2 * math.exp(-20))

    assert one_minus_pmax(logits).item() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("scale", [0.1, 3.0, 30.0])
def test_fp32_measures_match_float64_on_random_logits(scale: float) -> None:
    generator = torch.Generator().manual_seed(7)
    logits = torch.randn(16, 1000, generator=generator) * scale

    got = measures(logits)
    h, one_minus, var = float64_measures(logits)
    assert torch.allclose(got.entropy.double(), h, rtol=1e-4, atol=1e-5)
    assert torch.allclose(got.one_minus_pmax.double(), one_minus, rtol=1e-4, atol=1e-6)
    assert torch.allclose(got.varentropy.double(), var, rtol=1e-3, atol=1e-4)


def test_bf16_logits_are_measured_in_fp32() -> None:
    generator = torch.Generator().manual_seed(3)
    logits = (torch.randn(4, 8192, generator=generator) * 4).to(torch.bfloat16)

    got = measures(logits)
    # Exact up to fp32 rounding for the logits bf16 holds, not approximations of the bf16 sums.
    h, one_minus, var = float64_measures(logits.float())
    assert {t.dtype for t in got} == {torch.float32}
    assert torch.allclose(got.entropy.double(), h, rtol=1e-4)
    assert torch.allclose(got.one_minus_pmax.double(), one_minus, rtol=1e-4)
    assert torch.allclose(got.varentropy.double(), var, rtol=1e-3)


def test_float64_logits_stay_float64() -> None:
    assert entropy(torch.zeros(3, dtype=torch.float64)).dtype == torch.float64


def test_measures_do_not_depend_on_a_logit_offset() -> None:
    # Logits of 1e4 would overflow a naive exp; softmax is shift invariant and so must the measures be.
    logits = torch.tensor([[1.0, 2.0, 0.5, -1.0]])

    for small, large in zip(measures(logits), measures(logits + 1e4), strict=True):
        assert torch.allclose(small, large, atol=1e-3)


def test_leading_dimensions_are_kept() -> None:
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0))

    for value in measures(logits):
        assert value.shape == (2, 3)


@pytest.mark.parametrize("kind", GATE_KINDS)
def test_each_measure_alone_equals_its_field_of_measures(kind: GateKind) -> None:
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(1)) * 2

    assert torch.equal(measure(logits, kind), getattr(measures(logits), kind))


def test_gate_compares_its_own_measure_with_its_threshold() -> None:
    # Two tokens at 1/2 each: entropy ln 2 ≈ 0.69, 1 - p_max 0.5, varentropy 0; the kinds disagree around them.
    coin = torch.tensor([0.0, 0.0, -math.inf])

    assert Gate("entropy", 0.7).confident(coin)
    assert not Gate("entropy", 0.6).confident(coin)
    assert Gate("one_minus_pmax", 0.5).confident(coin)  # at the threshold counts as confident
    assert not Gate("one_minus_pmax", 0.49).confident(coin)
    assert Gate("varentropy", 0.0).confident(coin)


def test_an_infinite_threshold_always_drafts() -> None:
    assert Gate("entropy", math.inf).confident(torch.zeros(50_000))


def test_confident_batch_decides_per_distribution() -> None:
    logits = torch.tensor([[[9.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]]])

    decided = Gate.default().confident_batch(logits)
    assert decided.dtype == torch.bool
    assert decided.tolist() == [[True], [False]]


def test_confident_takes_exactly_one_distribution() -> None:
    gate = Gate.default()

    assert gate.confident(torch.tensor([[[9.0, 0.0]]]))
    with pytest.raises(ValueError, match=r"one distribution.*\(2, 2\)"):
        gate.confident(torch.zeros(2, 2))


def test_default_gate_is_entropy_with_the_documented_threshold() -> None:
    assert Gate.default() == Gate("entropy", 1.0)
    assert Gate.default("varentropy") == Gate("varentropy", DEFAULT_THRESHOLDS["varentropy"])


@pytest.mark.parametrize(
    ("kind", "threshold", "field"),
    [
        ("perplexity", 1.0, "kind"),
        ("entropy", -0.1, "threshold"),
        ("entropy", math.nan, "threshold"),
        ("entropy", True, "threshold"),
        ("entropy", "1.0", "threshold"),
    ],
)
def test_gate_refuses_bad_fields(kind: str, threshold: object, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field} must be"):
        Gate(kind, threshold)  # type: ignore[arg-type]


def test_config_defaults() -> None:
    assert gate_from_config({}) == Gate.default()
    assert gate_from_config({"kind": "one_minus_pmax"}) == Gate("one_minus_pmax", DEFAULT_THRESHOLDS["one_minus_pmax"])
    assert gate_from_config({"threshold": 2}) == Gate("entropy", 2.0)
    assert gate_from_config({"kind": "varentropy", "threshold": math.inf}) == Gate("varentropy", math.inf)


def test_config_threshold_is_a_float_even_from_an_int() -> None:
    assert type(gate_from_config({"threshold": 2}).threshold) is float


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"kind": "entropy", "treshold": 1.0}, r"^engine\.gate\.treshold is not a gate setting"),
        ({"kind": "max_prob"}, r"^engine\.gate\.kind must be one of entropy, one_minus_pmax, varentropy; got 'max_p"),
        ({"threshold": "high"}, r"^engine\.gate\.threshold must be a number >= 0"),
        ({"threshold": -1}, r"^engine\.gate\.threshold must be"),
        ({"threshold": None}, r"^engine\.gate\.threshold must be"),
        (["entropy"], r"^engine\.gate must be a mapping"),
    ],
)
def test_config_errors_name_the_bad_key(config: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        gate_from_config(config, where="engine.gate")
