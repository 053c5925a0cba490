"""The chart renders, passes its checks, refuses bad values clearly, and the checks themselves catch breakage.

One render of the default values, mutated copies of it, one bad value set: a few seconds. ``make chart-check``
runs every value set.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from tests.manifests import cases
from tests.manifests.chart_check import check_refusal
from tests.manifests.checks import check_objects
from tests.manifests.helm_chart import Chart, open_chart


@pytest.fixture(scope="module")
def chart() -> Iterator[Chart]:
    with open_chart() as opened:
        yield opened


@pytest.fixture(scope="module")
def rendered(chart: Chart) -> list[dict[str, Any]]:
    return chart.render(cases.GOOD["monitoring"])


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def test_default_values_pass_every_check(rendered: list[dict[str, Any]]) -> None:
    report = check_objects(rendered)
    assert report.problems == []
    assert report.envoy_configs_validated == 1
    assert report.custom_checked == 5  # 3 ServiceMonitors, 2 PodMonitors
    assert report.kubernetes_validated == len(rendered) - 5


def test_a_field_kubernetes_does_not_know_is_caught(rendered: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(rendered)
    named(broken, "Deployment", "tokenlabs-authz")["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    assert any("readinesProbe" in problem for problem in check_objects(broken).problems)


def test_ports_that_disagree_with_the_config_are_caught(rendered: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(rendered)
    container = named(broken, "Deployment", "tokenlabs-epp")["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["grpc"]["port"] = 9093
    assert check_objects(broken).problems == ["epp: readinessProbe is not a grpc probe on 9003"]


def test_a_command_line_the_cli_does_not_take_is_caught(rendered: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(rendered)
    named(broken, "Deployment", "tokenlabs-extproc")["spec"]["template"]["spec"]["containers"][0]["args"][1] = (
        "ext_proc"
    )
    (problem,) = check_objects(broken).problems
    assert (
        problem.startswith("Deployment/tokenlabs-extproc: `tokenlabs serve ext_proc --config")
        and "invalid choice" in problem
    )


def test_workers_the_picker_would_not_find_are_caught(rendered: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(rendered)
    labels = named(broken, "Deployment", "tokenlabs-worker-llama")["spec"]["template"]["metadata"]["labels"]
    labels["tokenlabs.io/pool"] = "lama"
    assert any("lack pool llama's selector" in problem for problem in check_objects(broken).problems)


def test_an_envoy_bootstrap_envoy_refuses_is_caught(rendered: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(rendered)
    init = named(broken, "Deployment", "tokenlabs-envoy")["spec"]["template"]["spec"]["initContainers"][0]
    # The settings take any host; Envoy's listener needs an IP.
    init["env"].append({"name": "TOKENLABS_GATEWAY__HOST", "value": "gateway.local"})
    problems = check_objects(broken).problems
    assert len(problems) == 1 and "envoy --mode validate refused" in problems[0]


def test_a_gateway_reference_to_a_missing_service_port_is_caught(chart: Chart) -> None:
    objects = chart.render(cases.GOOD["gateway"])
    assert check_objects(objects).problems == []
    route = named(objects, "HTTPRoute", "tokenlabs")
    route["spec"]["rules"][0]["backendRefs"][0]["port"] = 8001
    route["spec"]["rules"][0]["timeouts"]["request"] = "5 minutes"
    problems = check_objects(objects).problems
    assert "HTTPRoute/tokenlabs: no Service tokenlabs-pool-llama with port 8001" in problems
    assert any("rules.0.timeouts.request" in problem for problem in problems)


def test_bad_values_are_refused_with_their_message(chart: Chart) -> None:
    assert check_refusal(chart, "directory tenants", cases.BAD["directory tenants"]) is None
