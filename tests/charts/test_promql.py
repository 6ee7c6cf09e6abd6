"""Every PromQL expression of the alert rules (every rule file of the prometheus chart) and the
provisioned dashboards parses (Prometheus' own promtool) and uses only the metric names the
platform exposes (docs/metrics.md: the inference API's, the ML loop exporter's and Airflow's
statsd-exporter's, plus `up` and the histogram series suffixes)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import promql_parser
import pytest
import yaml

from tests.charts.conftest import (
    CHARTS_DIR,
    REPO,
    ci_value_files,
    one,
    render_chart,
    render_files,
    require_tool,
)

METRICS_DOC = REPO / "docs" / "metrics.md"
DASHBOARDS = sorted((CHARTS_DIR / "grafana" / "dashboards").glob("*.json"))
# Grafana's built-in variables, replaced by values PromQL accepts; `job` becomes each dashboard's
# own default (its templating's current value).
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
}


def dashboard_variables(dash: dict) -> dict[str, str]:
    """A dashboard's template variables as Grafana substitutes them by default."""
    found = {}
    for variable in dash.get("templating", {}).get("list", []):
        value = variable["current"]["value"]
        found |= {f"${{{variable['name']}}}": value, f"${variable['name']}": value}
    return found


def allowed_metric_names() -> set[str]:
    rows = re.findall(
        r"^\|\s*`([a-zA-Z_:][a-zA-Z0-9_:]*)`\s*\|\s*([a-z]+)", METRICS_DOC.read_text(), re.M
    )
    assert rows, f"no metric table found in {METRICS_DOC}"
    names = {"up"}
    for name, kind in rows:
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    return names


def metric_names(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node: object) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__":
                    names.add(f"__name__ {matcher.op} {matcher.value}")
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


# The rule files of the chart's defaults (its ConfigMap's `*.yml` keys but prometheus.yml).
RULE_FILES = ["airflow.yml", "mlops-api.yml", "mlops-loop.yml"]


def rule_files_of(objects: list[dict]) -> dict[str, str]:
    """A render's rule files: file name -> text."""
    data = one(objects, "ConfigMap")["data"]
    return {
        name: text
        for name, text in sorted(data.items())
        if name.endswith(".yml") and name != "prometheus.yml"
    }


def default_rule_files() -> dict[str, str]:
    """The rule files of the default values: file name -> text."""
    return rule_files_of(render_chart("prometheus"))


def rule_files() -> dict[str, str]:
    """Every rendered rule file, as `<case>/<file>`: the default values and every ci/*.yaml that
    keeps alerts."""
    files = {f"defaults/{name}": text for name, text in default_rule_files().items()}
    for path in ci_value_files("prometheus"):
        rendered = rule_files_of(render_files("prometheus", [path]))
        files |= {f"{path.stem}/{name}": text for name, text in rendered.items()}
    return files


def alert_expressions() -> list[tuple[str, str]]:
    out = []
    for case, text in rule_files().items():
        for group in yaml.safe_load(text)["groups"]:
            out += [(f"{case}:{r['alert']}", r["expr"]) for r in group["rules"]]
    return out


def dashboard_expressions() -> list[tuple[str, str]]:
    out = []
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        variables = GRAFANA_VARIABLES | dashboard_variables(dash)
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in variables.items():
                    expr = expr.replace(variable, value)
                assert "$" not in expr, (
                    f"{path.name} '{panel['title']}': unknown variable in {expr}"
                )
                out.append((f"{path.stem}:{panel['title']}:{target['refId']}", expr))
    return out


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *args], capture_output=True, text=True, check=False, timeout=60
    )


def test_there_is_something_to_check() -> None:
    assert sorted(default_rule_files()) == RULE_FILES
    assert {case.split("/")[1] for case in rule_files()} == set(RULE_FILES)
    assert len(alert_expressions()) >= 5
    assert len(dashboard_expressions()) >= 10
    # Every dashboard file is checked, each with queries of its own.
    assert {where.split(":")[0] for where, _ in dashboard_expressions()} == {
        path.stem for path in DASHBOARDS
    }
    assert {"inference-api", "ml-loop"} <= {path.stem for path in DASHBOARDS}


@pytest.mark.parametrize("case", sorted(rule_files()))
def test_alert_rules_pass_promtool(case: str, tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(rule_files()[case])
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_pass_promtool(tmp_path: Path) -> None:
    """promtool has no bare `parse` command: each query becomes a recording rule to check."""
    recording = [
        {"record": f"dashboard:query_{i}", "expr": expr}
        for i, (_, expr) in enumerate(dashboard_expressions())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": recording}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_config_passes_promtool(tmp_path: Path) -> None:
    """Debian's promtool is built without Kubernetes discovery: the static mode is checked."""
    data = one(
        render_chart("prometheus", {"scrape": {"fastapi": {"discovery": "static"}}}), "ConfigMap"
    )["data"]
    rules = tmp_path / "rules"
    rules.mkdir()
    for name in RULE_FILES:
        (rules / name).write_text(data[name])
    config = tmp_path / "prometheus.yml"
    config.write_text(data["prometheus.yml"].replace("/etc/prometheus/rules", str(rules)))
    result = promtool("check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_query(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "g", "rules": [{"record": "r", "expr": "sum(rate(x[5m])"}]}]}
        )
    )
    assert promtool("check", "rules", str(path)).returncode != 0


@pytest.mark.parametrize(("where", "expr"), alert_expressions() + dashboard_expressions())
def test_queries_use_only_exposed_metrics(where: str, expr: str) -> None:
    unknown = metric_names(expr) - allowed_metric_names()
    assert not unknown, f"{where}: {sorted(unknown)} not in docs/metrics.md"


def test_the_metric_check_catches_unknown_and_bare_histogram_names() -> None:
    allowed = allowed_metric_names()
    assert metric_names("rate(mlops_api_request_latency_seconds_bucket[5m])") - allowed
    assert metric_names("mlops_api_request_duration_seconds") - allowed  # not a series
    assert not metric_names("sum(up{job='fastapi'})") - allowed
    assert not metric_names("mlops_loop_drifted_features > 0") - allowed
    assert metric_names("mlops_loop_drifted_feature > 0") - allowed
