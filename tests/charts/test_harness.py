"""Every chart in charts/: helm lint --strict, render (defaults and each ci/*.yaml), strict
Kubernetes schema validation for 1.30 and the newest version kubernetes-validate knows, package."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest

from tests.charts.conftest import (
    ALL_CHARTS,
    CHARTS,
    CHARTS_DIR,
    ci_value_files,
    ensure_dependencies,
    helm,
    render_files,
    required_values,
)

K8S_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]

CASES = [
    pytest.param(chart, path, id=f"{chart}-{path.stem if path else 'defaults'}")
    for chart in ALL_CHARTS
    for path in [None, *ci_value_files(chart)]
]


def test_harness_covers_the_first_seven_charts() -> None:
    assert set(CHARTS) <= set(ALL_CHARTS), f"missing charts: {set(CHARTS) - set(ALL_CHARTS)}"


@pytest.mark.parametrize("chart", ALL_CHARTS)
def test_lint_strict(chart: str) -> None:
    ensure_dependencies(chart)
    args = ["lint", "--strict", str(CHARTS_DIR / chart), "-n", "mlops", *required_values(chart)]
    helm(*args)
    for path in ci_value_files(chart):
        helm(*args, "-f", str(path))


@pytest.mark.parametrize("chart", CHARTS)
def test_every_chart_has_ci_cases(chart: str) -> None:
    assert ci_value_files(chart), f"charts/{chart}/ci/ has no values file to render"


@pytest.mark.parametrize(("chart", "values_file"), CASES)
def test_renders_valid_kubernetes_objects(chart: str, values_file: Path | None) -> None:
    objects = render_files(chart, [values_file] if values_file else [])
    assert objects, f"{chart} rendered nothing"
    problems = []
    for obj in objects:
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                problems.append(f"{obj['kind']} ({obj['apiVersion']}): no schema in k8s {version}")
            except kubernetes_validate.ValidationError as error:
                where = "/".join(str(p) for p in error.path)
                problems.append(
                    f"{obj['kind']}/{obj['metadata']['name']} (k8s {version}) at {where}: "
                    f"{error.message}"
                )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("chart", ALL_CHARTS)
def test_package(chart: str, tmp_path: Path) -> None:
    ensure_dependencies(chart)
    helm("package", str(CHARTS_DIR / chart), "-d", str(tmp_path))
    packages = list(tmp_path.glob(f"{chart}-*.tgz"))
    assert len(packages) == 1
