"""grafana chart: provisioned Prometheus datasource and dashboards (no manual import), admin
from the secrets chart."""

from __future__ import annotations

import json

import promql_parser
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
from tests.charts.test_promql import GRAFANA_VARIABLES, dashboard_expressions, metric_names

# The provisioned dashboards and their uids: links and bookmarks use the uid, so it never changes.
# (A "Pipelines" dashboard for Airflow's metrics comes with them, on another branch.)
UIDS = {
    "inference-api.json": "mlops-inference-api",
    "ml-loop.json": "mlops-ml-loop",
    "pipelines.json": "mlops-pipelines",
}
# Dashboard -> the prometheus chart's scrape job its `job` variable selects.
JOBS = {"inference-api.json": "fastapi", "ml-loop.json": "loop", "pipelines.json": "airflow"}


def dashboards() -> dict[str, dict]:
    """The dashboards of the rendered ConfigMap: file name -> dashboard."""
    cm = one(render_chart("grafana"), "ConfigMap", "grafana-dashboards")
    return {name: json.loads(text) for name, text in cm["data"].items()}


def dashboard(name: str = "inference-api.json") -> dict:
    return dashboards()[name]


def exprs(dash: dict) -> list[str]:
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def job_matchers(expr: str) -> list[str | None]:
    """The value each vector selector of a query matches `job` with (None: no job matcher)."""
    for variable, value in GRAFANA_VARIABLES.items():
        if "job" not in variable:
            expr = expr.replace(variable, value)
    found: list[str | None] = []

    def visit(node: object) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            jobs = [m.value for m in node.matchers.matchers if m.name == "job"]
            found.append(jobs[0] if jobs else None)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def panels_by_title(dash: dict) -> dict[str, dict]:
    titles = [p["title"] for p in dash["panels"]]
    assert len(set(titles)) == len(titles), "panel titles are unique"
    return {p["title"]: p for p in dash["panels"]}


def test_datasource_points_at_the_prometheus_service() -> None:
    cm = one(render_chart("grafana"), "ConfigMap", "grafana-provisioning")
    (source,) = yaml.safe_load(cm["data"]["datasources.yaml"])["datasources"]
    assert source["url"] == "http://prometheus:9090"
    assert source["type"] == "prometheus"
    assert source["isDefault"] is True
    for name, dash in dashboards().items():
        panels = [p for p in dash["panels"] if p["type"] != "row"]
        uids = {p["datasource"]["uid"] for p in panels}
        uids |= {t["datasource"]["uid"] for p in panels for t in p["targets"]}
        assert uids == {source["uid"]}, name
        assert {p["datasource"]["type"] for p in panels} == {"prometheus"}, name


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
    assert sorted(UIDS) == files
    for name, dash in dashboards().items():
        assert dash == json.loads((CHARTS_DIR / "grafana" / "dashboards" / name).read_text())


def test_dashboards_have_stable_uids_and_tidy_panels() -> None:
    found = dashboards()
    assert {name: dash["uid"] for name, dash in found.items()} == UIDS
    for name, dash in found.items():
        assert dash["title"].startswith("MLOps / "), name
        assert dash["editable"] is False, name
        assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"]), name
        panels_by_title(dash)
        # No two panels overlap on Grafana's 24-column grid.
        cells: dict[tuple[int, int], str] = {}
        for panel in dash["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, f"{name}: {panel['title']}"
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in cells, f"{name}: {panel['title']} over {cells[(x, y)]}"
                    cells[(x, y)] = panel["title"]


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
    # The served model over time (issue 18): a row per version, a row per path, the mismatch.
    panels = panels_by_title(dash)
    version = panels["Model version served over time"]
    assert version["type"] == "state-timeline"
    assert [t["expr"] for t in version["targets"]] == [
        'count by (version) (mlops_api_model_info{job="$job"})'
    ]
    path = panels["Serving path over time (compiled / pipeline)"]
    assert path["type"] == "state-timeline"
    assert [t["expr"] for t in path["targets"]] == [
        'count by (path) (mlops_api_model_info{job="$job"})'
    ]
    mismatch = panels["Compiled path mismatch"]
    assert [t["expr"] for t in mismatch["targets"]] == [
        'max(mlops_api_compiled_mismatch{job="$job"})'
    ]


# The ML loop dashboard (issue 18): panel title -> (panel type, what its queries must contain).
ML_LOOP_PANELS = {
    "Time since newest batch": ("stat", ["time() - max(mlops_loop_newest_batch_timestamp_seconds"]),
    "Rows of the newest batch by stage": (
        "timeseries",
        ["by (stage) (mlops_loop_latest_batch_rows"],
    ),
    "Rows per second by stage": (
        "timeseries",
        ["rate(mlops_loop_rows_total", "rate(mlops_loop_batches_received_total"],
    ),
    "Rejected rows by rule": ("timeseries", ["by (rule) (increase(mlops_loop_rejected_rows_total"]),
    "Newest batch: rejected rows by rule": (
        "timeseries",
        ["by (rule) (mlops_loop_latest_batch_rejected_rows"],
    ),
    "Newest batch: rejected share": ("timeseries", ['stage="rejected"', 'stage="received"']),
    "Drift (PSI) by feature over decisions": (
        "state-timeline",
        ["by (feature) (mlops_loop_drift_psi"],
    ),
    "Drifted features": ("timeseries", ["mlops_loop_drifted_features"]),
    "Decisions by outcome": ("timeseries", ["by (outcome) (increase(mlops_loop_decisions_total"]),
    "Newest decision": ("table", ["by (data_version, outcome) (mlops_loop_latest_decision_info"]),
    "Test MAE: production and candidate": (
        "timeseries",
        ["mlops_loop_production_test_mae_dollars", "mlops_loop_candidate_test_mae_dollars"],
    ),
    "Test R²: production and candidate": (
        "timeseries",
        ["mlops_loop_production_test_r2", "mlops_loop_candidate_test_r2"],
    ),
    "Production model version over time": ("timeseries", ["mlops_loop_production_version"]),
    "Time since last promotion": (
        "stat",
        ["time() - max(mlops_loop_last_promotion_timestamp_seconds"],
    ),
}
STACKED = ["Rejected rows by rule", "Newest batch: rejected rows by rule", "Decisions by outcome"]


def test_ml_loop_dashboard_shows_what_the_issue_asks() -> None:
    dash = dashboard("ml-loop.json")
    panels = panels_by_title(dash)
    for title, (kind, parts) in ML_LOOP_PANELS.items():
        assert title in panels, title
        assert panels[title]["type"] == kind, title
        text = "\n".join(t["expr"] for t in panels[title]["targets"])
        for part in parts:
            assert part in text, f"{title}: {part}"
    for title in STACKED:
        stacking = panels[title]["fieldConfig"]["defaults"]["custom"]["stacking"]
        assert stacking["mode"] == "normal", title
    # Only the loop's own metrics (docs/metrics.md, "Metrics of the ML loop").
    queries = [expr for where, expr in dashboard_expressions() if where.startswith("ml-loop:")]
    assert len(queries) == len(exprs(dash))
    names = {name for expr in queries for name in metric_names(expr)}
    assert len(names) >= 15
    assert {name for name in names if not name.startswith("mlops_loop_")} == set()


@pytest.mark.parametrize("name", sorted(JOBS))
def test_dashboard_job_is_the_prometheus_job(name: str) -> None:
    dash = dashboard(name)
    (job,) = [v for v in dash["templating"]["list"] if v["name"] == "job"]
    prom_values = yaml.safe_load((CHARTS_DIR / "prometheus" / "values.yaml").read_text())
    assert job["current"]["value"] == prom_values["scrape"][JOBS[name]]["jobName"]
    assert job["options"] == [{"selected": True, "text": job["query"], "value": job["query"]}]
    assert job["query"] == job["current"]["value"]
    # Every query selects that job: a panel never mixes another job's series in.
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            matchers = job_matchers(target["expr"])
            assert matchers, f"{name} {panel['title']}: no series"
            assert set(matchers) == {"$job"}, f"{name} {panel['title']}: {target['expr']}"


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
