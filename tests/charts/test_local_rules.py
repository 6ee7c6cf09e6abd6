"""The local Prometheus (`mlops up`) loads the prometheus chart's alert rules: the copies in
src/mlops_platform/local/prometheus_rules/ are what `helm template` renders, byte for byte, and
the local data interval gives what helm gives for that interval. When the chart's rules change,
these tests fail until the copies are written again:

    PYTHONPATH=src .venv/bin/python -m tests.charts.test_local_rules
"""

from __future__ import annotations

import sys

import pytest
import yaml

from mlops_platform.local import prometheus
from mlops_platform.settings import load_settings
from tests.charts.conftest import CHARTS_DIR, render_chart
from tests.charts.test_promql import rule_files_of

REGENERATE = "PYTHONPATH=src .venv/bin/python -m tests.charts.test_local_rules"


def all_chart_rules(values: dict | None = None) -> dict[str, str]:
    return rule_files_of(render_chart("prometheus", values, "templates/configmap.yaml"))


def chart_rules(values: dict | None = None) -> dict[str, str]:
    """The chart's rule files the local Prometheus loads."""
    rendered = all_chart_rules(values)
    return {name: text for name, text in rendered.items() if name not in prometheus.NOT_LOCAL}


def test_every_rule_file_of_the_chart_is_local_or_left_out_on_purpose() -> None:
    rendered = sorted(all_chart_rules())
    assert rendered == sorted((*prometheus.RULE_FILES, *prometheus.NOT_LOCAL))


def test_the_committed_rules_are_the_charts() -> None:
    rendered = chart_rules()
    assert sorted(rendered) == sorted(prometheus.RULE_FILES)
    for name, text in rendered.items():
        committed = (prometheus.RULES_DIR / name).read_text()
        assert committed == text, f"{name} differs from the chart's: run {REGENERATE}"


# The chart's schema allows 60 s and more; locally tests go below that (the same replacement).
@pytest.mark.parametrize("interval_s", [60, 3600, 86_400])
def test_the_local_data_interval_is_what_helm_renders(interval_s: int) -> None:
    settings = load_settings(prometheus_data_interval_s=interval_s)
    rendered = chart_rules({"alerts": {"dataIntervalSeconds": interval_s}})
    assert prometheus.rule_files(settings) == rendered


def test_the_threshold_appears_only_in_the_freshness_rule() -> None:
    """The replacement touches a number; it must occur nowhere but MlopsLoopNoNewData."""
    text = (prometheus.RULES_DIR / "mlops-loop.yml").read_text()
    threshold = str(2 * prometheus.CHART_DATA_INTERVAL_S)
    rules = yaml.safe_load(text)["groups"][0]["rules"]
    holding = [rule["alert"] for rule in rules if threshold in yaml.safe_dump(rule)]
    assert holding == ["MlopsLoopNoNewData"]
    assert text.count(threshold) == 2  # its expression and its summary


def test_the_local_jobs_and_defaults_are_the_charts() -> None:
    values = yaml.safe_load((CHARTS_DIR / "prometheus" / "values.yaml").read_text())
    assert values["scrape"]["fastapi"]["jobName"] == prometheus.FASTAPI_JOB
    assert values["scrape"]["loop"]["jobName"] == prometheus.LOOP_JOB
    assert values["alerts"]["dataIntervalSeconds"] == prometheus.CHART_DATA_INTERVAL_S
    assert values["scrape"]["loop"]["port"] == load_settings().exporter_port
    assert values["service"]["port"] == load_settings().prometheus_port


def write() -> None:
    """Render the chart's rule files into the package (the copies the local Prometheus loads)."""
    prometheus.RULES_DIR.mkdir(exist_ok=True)
    for name, text in chart_rules().items():
        (prometheus.RULES_DIR / name).write_text(text)
        sys.stdout.write(f"wrote {prometheus.RULES_DIR / name}\n")


if __name__ == "__main__":
    write()
