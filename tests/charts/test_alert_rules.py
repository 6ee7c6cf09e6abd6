"""Alert rules that fire when they should and stay quiet otherwise: ``promtool test rules`` on
the prometheus chart's rendered rule file, with input series written per case."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.charts.conftest import require_tool
from tests.charts.test_promql import rule_files


@dataclass(frozen=True)
class Case:
    """Series (selector → promtool values notation) and whether ``alert`` fires at ``at``."""

    alert: str
    series: dict[str, str]
    fires: bool
    at: str = "10m"


CASES = [
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
    expected = [{"exp_labels": rule["labels"], "exp_annotations": rule["annotations"]}]
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
