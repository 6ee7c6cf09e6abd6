"""grafana chart: provisioned Prometheus datasource and dashboards (no manual import), admin
from the secrets chart."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.charts.conftest import (
    CHARTS_DIR,
    env_of,
    helm_test_check_call,
    helm_test_pods,
    one,
    pod_spec,
    render_chart,
)


def dashboard() -> dict:
    cm = one(render_chart("grafana"), "ConfigMap", "grafana-dashboards")
    return json.loads(cm["data"]["inference-api.json"])


def exprs(dash: dict) -> list[str]:
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def test_datasource_points_at_the_prometheus_service() -> None:
    cm = one(render_chart("grafana"), "ConfigMap", "grafana-provisioning")
    (source,) = yaml.safe_load(cm["data"]["datasources.yaml"])["datasources"]
    assert source["url"] == "http://prometheus:9090"
    assert source["type"] == "prometheus"
    assert source["isDefault"] is True
    uids = {t["datasource"]["uid"] for p in dashboard()["panels"] for t in p.get("targets", [])}
    assert uids == {source["uid"]}


def test_dashboards_are_provisioned_from_a_configmap() -> None:
    objects = render_chart("grafana")
    cm = one(objects, "ConfigMap", "grafana-provisioning")
    (provider,) = yaml.safe_load(cm["data"]["dashboards.yaml"])["providers"]
    container = pod_spec(one(objects, "Deployment"))["containers"][0]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[provider["options"]["path"]] == "dashboards"
    assert mounts["/etc/grafana/provisioning/datasources/datasources.yaml"] == "provisioning"
    files = sorted(p.name for p in (CHARTS_DIR / "grafana" / "dashboards").glob("*.json"))
    assert sorted(one(objects, "ConfigMap", "grafana-dashboards")["data"]) == files


def test_inference_dashboard_shows_what_the_issue_asks() -> None:
    dash = dashboard()
    text = "\n".join(exprs(dash))
    for metric in [
        "mlops_api_requests_total",  # traffic, errors
        "mlops_api_request_duration_seconds_bucket",  # latency percentiles
        "mlops_api_prediction_value_dollars_bucket",  # prediction distribution
        "mlops_api_model_info",  # model version
        "mlops_api_model_reloads_total",  # reloads
        "mlops_api_inference_log_queue_depth",  # log queue
        "mlops_api_inference_log_dropped_total",
    ]:
        assert metric in text, metric
    assert "histogram_quantile(0.99" in text
    assert dash["uid"]
    assert dash["title"]
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])


def test_dashboard_job_is_the_prometheus_job() -> None:
    (job,) = [v for v in dashboard()["templating"]["list"] if v["name"] == "job"]
    prom_values = yaml.safe_load((CHARTS_DIR / "prometheus" / "values.yaml").read_text())
    assert job["current"]["value"] == prom_values["scrape"]["fastapi"]["jobName"]


def test_admin_login_comes_from_the_secret() -> None:
    env = env_of(pod_spec(one(render_chart("grafana"), "Deployment"))["containers"][0])
    assert env["GF_SECURITY_ADMIN_USER"]["valueFrom"]["secretKeyRef"] == {
        "name": "grafana-credentials",
        "key": "admin-user",
    }
    assert env["GF_SECURITY_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "grafana-credentials",
        "key": "admin-password",
    }
    assert env["GF_USERS_ALLOW_SIGN_UP"]["value"] == "false"
    assert env["GF_AUTH_ANONYMOUS_ENABLED"]["value"] == "false"


def test_changed_dashboards_roll_the_pod() -> None:
    annotations = one(render_chart("grafana"), "Deployment")["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert {"checksum/provisioning", "checksum/dashboards"} <= set(annotations)


def pipelines_dashboard() -> dict:
    cm = one(render_chart("grafana"), "ConfigMap", "grafana-dashboards")
    return json.loads(cm["data"]["pipelines.json"])


def test_pipelines_dashboard_shows_what_the_issue_asks() -> None:
    """ "Pipelines": DAG runs by state, failures, run durations per DAG, task outcomes, queued and
    running tasks, scheduler heartbeat, from Airflow's statsd-exporter (docs/metrics.md; every
    name is checked there by test_promql.py)."""
    dash = pipelines_dashboard()
    text = "\n".join(exprs(dash))
    for metric in [
        "airflow_dagrun_duration_seconds_count",  # runs by state, failures
        'state="failed"',
        "airflow_dagrun_duration_seconds_sum",  # mean duration per DAG
        "airflow_dagrun_duration_seconds_bucket",  # p90 per DAG
        "airflow_ti_finish_total",  # task outcomes
        "airflow_task_duration_seconds_sum",
        "airflow_executor_queued_tasks",  # queue
        "airflow_executor_running_tasks",
        "airflow_scheduler_heartbeat_total",
        "airflow_dag_processing_import_errors",
    ]:
        assert metric in text, metric
    assert "by (dag_id" in text
    assert dash["uid"] == "mlops-pipelines", "a stable uid: links and bookmarks keep working"
    assert dash["title"] == "MLOps / Pipelines"
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    cm = one(render_chart("grafana"), "ConfigMap", "grafana-provisioning")
    (source,) = yaml.safe_load(cm["data"]["datasources.yaml"])["datasources"]
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert {p["datasource"]["uid"] for p in panels} == {source["uid"]}
    assert {t["datasource"]["uid"] for p in panels for t in p["targets"]} == {source["uid"]}
    assert all('job="$job"' in expr for expr in exprs(dash))


def test_pipelines_dashboard_job_is_the_airflow_scrape_job() -> None:
    (job,) = [v for v in pipelines_dashboard()["templating"]["list"] if v["name"] == "job"]
    prom_values = yaml.safe_load((CHARTS_DIR / "prometheus" / "values.yaml").read_text())
    assert job["current"]["value"] == prom_values["scrape"]["airflow"]["jobName"]


def test_dashboard_uids_are_distinct() -> None:
    data = one(render_chart("grafana"), "ConfigMap", "grafana-dashboards")["data"]
    uids = [json.loads(text)["uid"] for text in data.values()]
    assert len(uids) == len(set(uids)) >= 2


# `helm test grafana` (templates/tests/test-connection.yaml): its command, run through the CLI.
# The pod, its NetworkPolicy rule and its `tests` values: test_helm_test_pods.py.


def test_helm_test_asks_for_the_provisioned_datasource_as_admin_through_the_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = render_chart("grafana")
    (pod,) = helm_test_pods(objects)
    service = one(objects, "Service", "grafana")
    url, user, password, datasource = helm_test_check_call(pod, "grafana", monkeypatch)
    assert url == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    cm = one(objects, "ConfigMap", "grafana-provisioning")
    (source,) = yaml.safe_load(cm["data"]["datasources.yaml"])["datasources"]
    assert source["type"] == "prometheus"
    assert datasource == source["name"]
    # The admin login the server is started with (same Secret and keys).
    server = env_of(pod_spec(one(objects, "Deployment"))["containers"][0])
    assert (user, password) == tuple(
        "{name}/{key}".format(**server[var]["valueFrom"]["secretKeyRef"])
        for var in ("GF_SECURITY_ADMIN_USER", "GF_SECURITY_ADMIN_PASSWORD")
    )


def test_helm_test_follows_release_service_datasource_and_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = {
        "datasource": {"name": "Platform metrics"},
        "service": {"port": 13000},
        "auth": {"existingSecret": "dash-admin", "adminUserKey": "user"},
    }
    (pod,) = helm_test_pods(render_chart("grafana", values, release="dash"))
    assert pod["metadata"]["name"] == "dash-grafana-test"
    assert helm_test_check_call(pod, "grafana", monkeypatch) == (
        "http://dash-grafana:13000",
        "dash-admin/user",
        "dash-admin/admin-password",
        "Platform metrics",
    )
