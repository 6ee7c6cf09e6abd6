"""Alert rules that fire when they should and stay quiet otherwise: ``promtool test rules`` on
the prometheus chart's rendered rule files (mlops-api.yml, mlops-loop.yml, airflow.yml), with input
series written per case."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.charts.conftest import require_tool
from tests.charts.test_promql import RULE_FILES, default_rule_files


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
# The loop exporter: a static target (scrape.loop).
LOOP = 'job="mlops-loop", instance="streamlit-exporter:9188"'
LOOP_LABELS = {"job": "mlops-loop", "instance": "streamlit-exporter:9188"}
# Airflow's statsd-exporter: a static target (scrape.airflow).
AIRFLOW = 'job="airflow", instance="airflow-statsd:9102"'
AIRFLOW_LABELS = {"job": "airflow", "instance": "airflow-statsd:9102"}
FAILED_RUNS = (
    f'airflow_dagrun_duration_seconds_count{{{AIRFLOW}, state="failed", dag_id="data_pipeline"}}'
)
HEARTBEATS = f"airflow_scheduler_heartbeat_total{{{AIRFLOW}}}"


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
    # --- mlops-loop.yml: the ML loop exporter's metrics (docs/metrics.md, mlops_loop_*) ---
    Case(
        "MlopsLoopScrapeDown",
        {f"up{{{LOOP}}}": "1 1 1 0x20"},
        fires=True,
        labels=LOOP_LABELS,
        annotations={
            "summary": "Prometheus cannot scrape the ML loop exporter (streamlit-exporter:9188)"
        },
    ),
    Case("MlopsLoopScrapeDown", {f"up{{{LOOP}}}": "1x5 0x3 1x10"}, fires=False),  # a restart
    Case(
        "MlopsLoopTargetMissing",
        {f"up{{{API}}}": "1x30"},
        fires=True,
        at="15m",
        labels={"job": "mlops-loop"},
    ),
    Case("MlopsLoopTargetMissing", {f"up{{{LOOP}}}": "1x30"}, fires=False, at="15m"),
    Case(
        "MlopsLoopStoreUnreadable",
        {
            f'mlops_loop_store_up{{{LOOP}, store="raw"}}': "1 1 0x20",
            f'mlops_loop_store_up{{{LOOP}, store="clean"}}': "1x22",
        },
        fires=True,
        labels={**LOOP_LABELS, "store": "raw"},
        annotations={
            "summary": "The raw store cannot be read",
            "description": "The exporter, as the read-only user, has failed to read the raw store"
            " for 5 minutes: PostgreSQL is down or unreachable, or the reader role lost its"
            " grants. The UI shows nothing new either.",
        },
    ),
    Case(  # a two-minute database restart
        "MlopsLoopStoreUnreadable",
        {f'mlops_loop_store_up{{{LOOP}, store="raw"}}': "1x3 0x2 1x10"},
        fires=False,
    ),
    Case(  # the last batch came at t=0, three hours ago: two hourly runs missed
        "MlopsLoopNoNewData",
        {f"mlops_loop_newest_batch_timestamp_seconds{{{LOOP}}}": "0x200"},
        fires=True,
        at="3h",
        annotations={
            "description": "The newest RAW batch is 3h 0m 0s old: the data source stopped"
            " sending, or the data DAG is paused or failing."
        },
    ),
    Case(  # one hourly run late (1h50m) is not yet two intervals
        "MlopsLoopNoNewData",
        {f"mlops_loop_newest_batch_timestamp_seconds{{{LOOP}}}": "0x200"},
        fires=False,
        at="110m",
    ),
    Case(  # a batch every hour, the newest at 3h
        "MlopsLoopNoNewData",
        {f"mlops_loop_newest_batch_timestamp_seconds{{{LOOP}}}": "0x59 3600x59 7200x59 10800x20"},
        fires=False,
        at="3h",
    ),
    Case(
        "MlopsLoopHighRejectionShare",
        {
            f'mlops_loop_latest_batch_rows{{{LOOP}, stage="received"}}': "1000x20",
            f'mlops_loop_latest_batch_rows{{{LOOP}, stage="cleaned"}}': "600x20",
            f'mlops_loop_latest_batch_rows{{{LOOP}, stage="rejected"}}': "400x20",
        },
        fires=True,
        labels=LOOP_LABELS,
        annotations={
            "description": "40% of its rows failed cleaning: mlops_loop_latest_batch_rejected_rows"
            " says by which rule (a changed source format?)."
        },
    ),
    Case(
        "MlopsLoopHighRejectionShare",
        {
            f'mlops_loop_latest_batch_rows{{{LOOP}, stage="received"}}': "1000x20",
            f'mlops_loop_latest_batch_rows{{{LOOP}, stage="cleaned"}}': "950x20",
            f'mlops_loop_latest_batch_rows{{{LOOP}, stage="rejected"}}': "50x20",
        },
        fires=False,
    ),
    Case(
        "MlopsLoopDriftDetected",
        {f"mlops_loop_drifted_features{{{LOOP}}}": "0 0 3x20"},
        fires=True,
        labels=LOOP_LABELS,
        annotations={"summary": "Drift at the newest decision: 3 features above the PSI threshold"},
    ),
    Case("MlopsLoopDriftDetected", {f"mlops_loop_drifted_features{{{LOOP}}}": "0x20"}, fires=False),
    Case(  # three rejections in 40 minutes; the promoted count does not move
        "MlopsLoopRepeatedRejections",
        {
            f'mlops_loop_decisions_total{{{LOOP}, outcome="rejected"}}': "5x10 6x10 7x10 8x10",
            f'mlops_loop_decisions_total{{{LOOP}, outcome="promoted"}}': "2x43",
        },
        fires=True,
        at="40m",
        labels={**LOOP_LABELS, "outcome": "rejected"},
        annotations={
            "description": "About 3 rejected decisions (increase() extrapolates): the new data no"
            " longer trains a better model. The model history (Streamlit) says why each lost."
        },
    ),
    Case(  # three rejections, but a promotion among them
        "MlopsLoopRepeatedRejections",
        {
            f'mlops_loop_decisions_total{{{LOOP}, outcome="rejected"}}': "5x10 6x10 7x10 8x10",
            f'mlops_loop_decisions_total{{{LOOP}, outcome="promoted"}}': "2x20 3x23",
        },
        fires=False,
        at="40m",
    ),
    Case(  # two rejections
        "MlopsLoopRepeatedRejections",
        {f'mlops_loop_decisions_total{{{LOOP}, outcome="rejected"}}': "5x15 6x15 7x13"},
        fires=False,
        at="40m",
    ),
    Case(
        "AirflowMetricsScrapeDown",
        {f"up{{{AIRFLOW}}}": "1 1 1 0x20"},
        fires=True,
        labels=AIRFLOW_LABELS,
        annotations={
            "summary": "Prometheus cannot scrape Airflow's statsd-exporter (airflow-statsd:9102)"
        },
    ),
    Case("AirflowMetricsScrapeDown", {f"up{{{AIRFLOW}}}": "1x5 0x3 1x10"}, fires=False),
    Case(
        "AirflowMetricsTargetMissing",
        {f"up{{{LOOP}}}": "1x30"},
        fires=True,
        at="15m",
        labels={"job": "airflow"},
    ),
    Case("AirflowMetricsTargetMissing", {f"up{{{AIRFLOW}}}": "1x30"}, fires=False, at="15m"),
    Case(  # a second failure of a DAG that had failed before
        "AirflowDagRunFailed",
        {f"up{{{AIRFLOW}}}": "1x120", FAILED_RUNS: "1x90 2x30"},
        fires=True,
        at="100m",
        labels={"dag_id": "data_pipeline"},
        annotations={"summary": "A run of DAG data_pipeline failed in the last 1h"},
    ),
    Case(  # the first failure since the exporter started: a new series at 1
        "AirflowDagRunFailed",
        {f"up{{{AIRFLOW}}}": "1x120", FAILED_RUNS: "_x90 1x30"},
        fires=True,
        at="100m",
        labels={"dag_id": "data_pipeline"},
        annotations={"summary": "A run of DAG data_pipeline failed in the last 1h"},
    ),
    Case(  # the last failure is more than an hour old; runs succeed since
        "AirflowDagRunFailed",
        {
            f"up{{{AIRFLOW}}}": "1x180",
            FAILED_RUNS: "1x180",
            f'airflow_dagrun_duration_seconds_count{{{AIRFLOW}, state="success",'
            ' dag_id="data_pipeline"}': "0+1x180",
        },
        fires=False,
        at="150m",
    ),
    Case(  # Prometheus just started: an old failure in the exporter is not a new one
        "AirflowDagRunFailed",
        {f"up{{{AIRFLOW}}}": "1x20", FAILED_RUNS: "1x20"},
        fires=False,
        at="15m",
    ),
    Case(  # heartbeats every 5 s, then none after 10 minutes
        "AirflowSchedulerHeartbeatStopped",
        {f"up{{{AIRFLOW}}}": "1x30", HEARTBEATS: "0+12x10 120x20"},
        fires=True,
        at="30m",
    ),
    Case(
        "AirflowSchedulerHeartbeatStopped",
        {f"up{{{AIRFLOW}}}": "1x30", HEARTBEATS: "0+12x30"},
        fires=False,
        at="30m",
    ),
    Case(  # no scrape: AirflowMetricsScrapeDown says so, not this rule
        "AirflowSchedulerHeartbeatStopped",
        {f"up{{{AIRFLOW}}}": "0x30"},
        fires=False,
        at="30m",
    ),
    Case(  # the exporter answers, but no heartbeat ever arrived
        "AirflowSchedulerHeartbeatStopped",
        {f"up{{{AIRFLOW}}}": "1x30"},
        fires=True,
        at="30m",
    ),
    Case(
        "AirflowDagImportErrors",
        {f"airflow_dag_processing_import_errors{{{AIRFLOW}}}": "0x5 1x20"},
        fires=True,
        at="20m",
        annotations={"summary": "1 DAG files fail to import"},
    ),
    Case(  # a broken commit fixed within minutes
        "AirflowDagImportErrors",
        {f"airflow_dag_processing_import_errors{{{AIRFLOW}}}": "0x5 1x3 0x20"},
        fires=False,
        at="20m",
    ),
]


def _rules() -> list[dict]:
    """Every rule of the default rule files."""
    return [
        rule
        for text in default_rule_files().values()
        for group in yaml.safe_load(text)["groups"]
        for rule in group["rules"]
    ]


def _rule(alert: str) -> dict:
    return next(r for r in _rules() if r.get("alert") == alert)


def _test_file(case: Case, rules: list[Path]) -> dict:
    rule = _rule(case.alert)
    expected = [
        {
            "exp_labels": {**rule["labels"], **case.labels},
            "exp_annotations": {**rule["annotations"], **case.annotations},
        }
    ]
    return {
        "rule_files": [str(path) for path in rules],
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
    rules = []
    for name, text in default_rule_files().items():
        rules.append(tmp_path / name)
        rules[-1].write_text(text)
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
    """Every rule of every rule file (RULE_FILES: the API's, the loop's and Airflow's)."""
    assert sorted(default_rule_files()) == RULE_FILES
    alerts = {rule["alert"] for rule in _rules() if "alert" in rule}
    assert {"MlopsApiScrapeDown", "MlopsLoopNoNewData", "AirflowDagRunFailed"} <= alerts
    covered = {(case.alert, case.fires) for case in CASES}
    missing = sorted(
        f"{alert} ({'fires' if fires else 'quiet'})"
        for alert in alerts
        for fires in (True, False)
        if (alert, fires) not in covered
    )
    assert not missing, f"alert rules without a promtool case: {missing}"
