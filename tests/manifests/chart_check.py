"""``make chart-check``: lint and render the Helm chart offline and check everything it renders.

    .venv/bin/python -m tests.manifests.chart_check [--case NAME ...]

For every value set in ``cases.GOOD``: render with Helm's library (helm-sdkpy), validate each built-in object
against the Kubernetes schemas (kubernetes-validate) and each custom resource against its kind's own checks, load
the ConfigMap's config with the servers' own settings code, render the standalone Envoy's bootstrap as its init
container does and validate it with the real Envoy binary. Every ``cases.BAD`` value set must be refused with its
expected message. One line per value set, a one-line summary last; exit status 1 on any problem.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tests.manifests import cases
from tests.manifests.checks import KUBERNETES_VERSION, Report, check_objects
from tests.manifests.helm_chart import LINT_ERROR, Chart, RenderError, open_chart


@dataclass
class Totals:
    value_sets: int = 0
    objects: int = 0
    kubernetes_validated: int = 0
    custom_checked: int = 0
    envoy_configs: int = 0
    refused: int = 0
    failures: list[str] = field(default_factory=list)


def check_value_set(chart: Chart, name: str, values: Mapping[str, object]) -> Report:
    """Render one value set and run every check on it; a refused render is a problem of the report."""
    try:
        objects = chart.render(values)
    except RenderError as error:
        return Report(problems=[f"Helm refused the values: {error}"])
    report = check_objects(objects)
    print(
        f"  {name}: {len(objects)} objects, {report.kubernetes_validated} Kubernetes-validated, "
        f"{report.custom_checked} custom resources checked, {report.envoy_configs_validated} Envoy configs valid"
        + ("" if not report.problems else f", {len(report.problems)} problems")
    )
    return report


def check_refusal(chart: Chart, name: str, case: cases.BadCase) -> str | None:
    """None when Helm refuses the values with the expected message; otherwise what went wrong."""
    try:
        chart.render(case.values)
    except RenderError as error:
        if case.expect in str(error):
            print(f"  refused as expected: {name}: {str(error).splitlines()[-1].strip()}")
            return None
        return f"{name}: refused, but without {case.expect!r}: {error}"
    return f"{name}: Helm accepted values that should be refused"


def run(good: Mapping[str, Mapping[str, object]], bad: Mapping[str, cases.BadCase]) -> Totals:
    totals = Totals()
    with open_chart() as chart:
        errors = [finding for finding in chart.lint() if finding.severity >= LINT_ERROR]
        totals.failures += [f"helm lint: error in {finding.path}" for finding in errors]
        print(f"helm lint: {'ok' if not errors else f'{len(errors)} errors'}")
        print("value sets:")
        for name, values in good.items():
            report = check_value_set(chart, name, values)
            totals.value_sets += 1
            totals.kubernetes_validated += report.kubernetes_validated
            totals.custom_checked += report.custom_checked
            totals.objects += report.kubernetes_validated + report.custom_checked
            totals.envoy_configs += report.envoy_configs_validated
            totals.failures += [f"{name}: {problem}" for problem in report.problems]
        print("bad values:")
        for name, case in bad.items():
            failure = check_refusal(chart, name, case)
            if failure is None:
                totals.refused += 1
            else:
                totals.failures.append(failure)
    return totals


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append", choices=sorted(cases.GOOD), help="only these good value sets")
    args = parser.parse_args(argv)
    good = {name: cases.GOOD[name] for name in args.case} if args.case else cases.GOOD
    started = time.monotonic()
    totals = run(good, cases.BAD if not args.case else {})
    for failure in totals.failures:
        print(f"FAIL {failure}")
    verdict = "FAIL" if totals.failures else "ok"
    print(
        f"chart-check {verdict}: {totals.value_sets} value sets, {totals.objects} objects, each checked "
        f"({totals.kubernetes_validated} against Kubernetes {KUBERNETES_VERSION} schemas, "
        f"{totals.custom_checked} custom resources by their kinds' checks), "
        f"{totals.envoy_configs} Envoy bootstraps valid, {totals.refused}/{len(cases.BAD) if not args.case else 0} "
        f"bad value sets refused, {len(totals.failures)} problems, {time.monotonic() - started:.1f}s"
    )
    return 1 if totals.failures else 0


if __name__ == "__main__":
    sys.exit(main())
