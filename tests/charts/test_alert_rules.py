"""Alert rules that fire when they should and stay quiet otherwise: ``promtool test rules`` on
the prometheus chart's rendered rule file, with input series written per case."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.charts.conftest import require_tool
from tests.charts.test_promql import rule_files


@dataclass(frozen=True)
class Case:
    """Series (selector → promtool values notation) and whether ``alert`` fires at ``at``.

    A firing alert carries the rule's labels plus ``labels`` (those its expression keeps, e.g.
    ``instance``), and the rule's annotations with ``annotations`` in place of the templated ones
    as promtool renders them."""

    alert: str
    series: dict[str, str]
    fires: bool
    at: str = "10m"
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


API = 'job="fastapi", instance="10.0.0.7:8989"'
OTHER = 'job="other", instance="10.0.0.9:8989"'


CASES = [
    Case(
        "MlopsApiScrapeDown",
        {f"up{{{API}}}": "1 1 1 0x20"},
        fires=True,
        labels={"job": "fastapi", "instance": "10.0.0.7:8989"},
        annotations={"summary": "Prometheus cannot scrape the inference API (10.0.0.7:8989)"},
    ),
    Case("MlopsApiScrapeDown", {f"up{{{API}}}": "1x20"}, fires=False),
    Case("MlopsApiScrapeDown", {f"up{{{API}}}": "1x8 0 1x10"}, fires=False),  # one miss
    Case(
        "MlopsApiTargetMissing",
        {f"up{{{OTHER}}}": "1x30"},
        fires=True,
        at="15m",
        labels={"job": "fastapi"},
    ),
    Case("MlopsApiTargetMissing", {f"up{{{API}}}": "1x30"}, fires=False, at="15m"),
    Case(
        "MlopsApiHighErrorRate",
        {
            f'mlops_api_requests_total{{{API}, status="200"}}': "0+90x30",
            f'mlops_api_requests_total{{{API}, status="503"}}': "0+10x30",
        },
        fires=True,
        at="15m",
        annotations={"description": "Error ratio over 5 minutes: 10%."},
    ),
    Case(
        "MlopsApiHighErrorRate",
        {
            f'mlops_api_requests_total{{{API}, status="200"}}': "0+99x30",
            f'mlops_api_requests_total{{{API}, status="503"}}': "0+1x30",
        },
        fires=False,
        at="15m",
    ),
    Case(
        "MlopsApiHighLatencyP99",
        {
            f'mlops_api_request_duration_seconds_bucket{{{API}, route="/predict", le="1"}}': "0x30",
            f'mlops_api_request_duration_seconds_bucket{{{API}, route="/predict", le="2.5"}}': (
                "0+10x30"
            ),
            f'mlops_api_request_duration_seconds_bucket{{{API}, route="/predict", le="+Inf"}}': (
                "0+10x30"
            ),
        },
        fires=True,
        at="20m",
        annotations={"description": "p99 over 5 minutes: 2.485s."},
    ),
    Case(  # slow scrapes of /metrics are not the API's latency
        "MlopsApiHighLatencyP99",
        {
            f'mlops_api_request_duration_seconds_bucket{{{API}, route="/metrics", le="1"}}': "0x30",
            f'mlops_api_request_duration_seconds_bucket{{{API}, route="/metrics", le="+Inf"}}': (
                "0+10x30"
            ),
            f'mlops_api_request_duration_seconds_bucket{{{API}, route="/predict", le="1"}}': (
                "0+10x30"
            ),
            f'mlops_api_request_duration_seconds_bucket{{{API}, route="/predict", le="+Inf"}}': (
                "0+10x30"
            ),
        },
        fires=False,
        at="20m",
    ),
    Case(
        "MlopsApiNoProductionModel",
        {f"mlops_api_model_loaded{{{API}}}": "0x20"},
        fires=True,
        at="15m",
    ),
    Case(
        "MlopsApiNoProductionModel",
        {f"mlops_api_model_loaded{{{API}}}": "0x5 1x15"},
        fires=False,
        at="15m",
    ),
    Case(
        "MlopsApiModelReloadFailed",
        {f'mlops_api_model_reloads_total{{{API}, outcome="failed"}}': "0x5 1x10"},
        fires=True,
        labels={"job": "fastapi", "instance": "10.0.0.7:8989", "outcome": "failed"},
    ),
    Case(
        "MlopsApiModelReloadFailed",
        {
            f'mlops_api_model_reloads_total{{{API}, outcome="failed"}}': "0x20",
            f'mlops_api_model_reloads_total{{{API}, outcome="ok"}}': "0x5 1x15",
        },
        fires=False,
    ),
    Case(
        "MlopsApiInferenceLogDrops",
        {f"mlops_api_inference_log_dropped_total{{{API}}}": "0x5 100x10"},
        fires=True,
        labels={"job": "fastapi", "instance": "10.0.0.7:8989"},
        annotations={
            "description": "100 rows dropped in 10 minutes: the RAW store is slow or down."
        },
    ),
    Case(
        "MlopsApiInferenceLogDrops",
        {f"mlops_api_inference_log_dropped_total{{{API}}}": "0x20"},
        fires=False,
    ),
    Case(
        "MlopsApiInferenceLogBacklog",
        {f"mlops_api_inference_log_queue_depth{{{API}}}": "6000x20"},
        fires=True,
        at="15m",
    ),
    Case(  # a burst the writer catches up with
        "MlopsApiInferenceLogBacklog",
        {f"mlops_api_inference_log_queue_depth{{{API}}}": "6000x5 10x15"},
        fires=False,
        at="15m",
    ),
    Case(
        "MlopsApiCompiledPathMismatch",
        {'mlops_api_compiled_mismatch{job="fastapi", instance="10.0.0.7:8989"}': "0 0 1x20"},
        fires=True,
    ),
    Case(
        "MlopsApiCompiledPathMismatch",
        {'mlops_api_compiled_mismatch{job="fastapi", instance="10.0.0.7:8989"}': "0x20"},
        fires=False,
    ),
    Case(  # another job's series is not ours to alert on
        "MlopsApiCompiledPathMismatch",
        {'mlops_api_compiled_mismatch{job="other", instance="10.0.0.9:8989"}': "1x20"},
        fires=False,
    ),
]


def _rule(alert: str) -> dict:
    groups = yaml.safe_load(rule_files()["defaults"])["groups"]
    return next(r for g in groups for r in g["rules"] if r.get("alert") == alert)


def _test_file(case: Case, rules: Path) -> dict:
    rule = _rule(case.alert)
    expected = [
        {
            "exp_labels": {**rule["labels"], **case.labels},
            "exp_annotations": {**rule["annotations"], **case.annotations},
        }
    ]
    return {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
                "alert_rule_test": [
                    {
                        "eval_time": case.at,
                        "alertname": case.alert,
                        "exp_alerts": expected if case.fires else [],
                    }
                ],
            }
        ],
    }


@pytest.mark.parametrize(
    "case",
    CASES,
    ids=[f"{c.alert}-{'fires' if c.fires else 'quiet'}-{i}" for i, c in enumerate(CASES)],
)
def test_alert_fires_only_when_it_should(case: Case, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(rule_files()["defaults"])
    spec = tmp_path / "test.yml"
    spec.write_text(yaml.safe_dump(_test_file(case, rules)))
    result = subprocess.run(
        [require_tool("promtool"), "test", "rules", str(spec)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    """The harness can fail: a quiet series expected to fire is reported by promtool."""
    wrong = Case(CASES[1].alert, CASES[1].series, fires=True)
    with pytest.raises(AssertionError, match="FAILED"):
        test_alert_fires_only_when_it_should(wrong, tmp_path)


def test_every_rule_has_a_case_that_fires_and_one_that_stays_quiet() -> None:
    groups = yaml.safe_load(rule_files()["defaults"])["groups"]
    alerts = {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}
    covered = {(case.alert, case.fires) for case in CASES}
    missing = sorted(
        f"{alert} ({'fires' if fires else 'quiet'})"
        for alert in alerts
        for fires in (True, False)
        if (alert, fires) not in covered
    )
    assert not missing, f"alert rules without a promtool case: {missing}"
