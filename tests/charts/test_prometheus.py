"""prometheus chart: scrape of fastapi:8989/metrics (Kubernetes discovery with a namespaced Role,
or a static target) and of the ML loop exporter (streamlit-exporter:9188), the alert rules of
both, a volume."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_platform import checks
from mlops_platform.local.postgres import free_ports
from tests.charts.conftest import (
    HelmError,
    by_kind,
    helm_test_check_call,
    helm_test_pods,
    one,
    pod_spec,
    render_chart,
    require_tool,
)

REQUIRED_ALERTS = {
    "MlopsApiHighErrorRate",
    "MlopsApiHighLatencyP99",
    "MlopsApiNoProductionModel",
    "MlopsApiInferenceLogDrops",
    "MlopsApiScrapeDown",
    "MlopsApiCompiledPathMismatch",
}


def config(values: dict | None = None) -> dict:
    cm = one(render_chart("prometheus", values), "ConfigMap", "prometheus-config")
    return yaml.safe_load(cm["data"]["prometheus.yml"])


def rules(values: dict | None = None) -> list[dict]:
    cm = one(render_chart("prometheus", values), "ConfigMap", "prometheus-config")
    return [r for g in yaml.safe_load(cm["data"]["mlops-api.yml"])["groups"] for r in g["rules"]]


def fastapi_job(cfg: dict) -> dict:
    return next(j for j in cfg["scrape_configs"] if j["job_name"] == "fastapi")


def test_static_target_is_the_fastapi_service() -> None:
    job = fastapi_job(config({"scrape": {"fastapi": {"discovery": "static"}}}))
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [{"targets": ["fastapi:8989"]}]


def test_kubernetes_discovery_keeps_the_fastapi_service_port() -> None:
    job = fastapi_job(config())
    assert job["kubernetes_sd_configs"] == [
        {"role": "endpointslice", "namespaces": {"names": ["mlops"]}}
    ]
    keep = {
        tuple(r["source_labels"]): r["regex"]
        for r in job["relabel_configs"]
        if r.get("action") == "keep"
    }
    assert keep == {
        ("__meta_kubernetes_service_name",): "fastapi",
        ("__meta_kubernetes_endpointslice_port",): "8989",
    }


def test_discovery_has_a_read_only_namespaced_role() -> None:
    objects = render_chart("prometheus")
    assert by_kind(objects, "ClusterRole") == []
    assert by_kind(objects, "ClusterRoleBinding") == []
    role = one(objects, "Role", "prometheus")
    for rule in role["rules"]:
        assert set(rule["verbs"]) == {"get", "list", "watch"}
    assert any("endpointslices" in r["resources"] for r in role["rules"])
    binding = one(objects, "RoleBinding", "prometheus")
    assert binding["subjects"][0]["name"] == "prometheus"
    pod = pod_spec(one(objects, "Deployment", "prometheus"))
    assert pod["serviceAccountName"] == "prometheus"
    assert pod["automountServiceAccountToken"] is True


def test_static_mode_needs_no_rbac_and_no_token() -> None:
    objects = render_chart("prometheus", {"scrape": {"fastapi": {"discovery": "static"}}})
    assert by_kind(objects, "Role") == []
    assert by_kind(objects, "RoleBinding") == []
    assert pod_spec(one(objects, "Deployment"))["automountServiceAccountToken"] is False


def test_alert_rules_cover_the_issue() -> None:
    found = {r["alert"] for r in rules()}
    assert found >= REQUIRED_ALERTS
    for rule in rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        assert 'job="fastapi"' in rule["expr"]


def test_alert_thresholds_come_from_values() -> None:
    by_name = {
        r["alert"]: r["expr"]
        for r in rules(
            {"alerts": {"enabled": True, "errorRateThreshold": 0.01, "p99LatencySeconds": 0.25}}
        )
    }
    assert "> 0.01" in by_name["MlopsApiHighErrorRate"]
    assert "> 0.25" in by_name["MlopsApiHighLatencyP99"]


def test_rules_are_mounted_apart_from_the_config() -> None:
    pod = pod_spec(one(render_chart("prometheus"), "Deployment"))
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert [i["key"] for i in volumes["rules"]["configMap"]["items"]] == [
        "mlops-api.yml",
        "mlops-loop.yml",
        "airflow.yml",
    ]
    assert [i["key"] for i in volumes["config"]["configMap"]["items"]] == ["prometheus.yml"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["rules"] == "/etc/prometheus/rules"
    assert mounts["data"] == "/prometheus"
    assert one(render_chart("prometheus"), "PersistentVolumeClaim", "prometheus-data")


LOOP_ALERTS = {
    "MlopsLoopScrapeDown",
    "MlopsLoopTargetMissing",
    "MlopsLoopStoreUnreadable",
    "MlopsLoopNoNewData",
    "MlopsLoopHighRejectionShare",
    "MlopsLoopDriftDetected",
    "MlopsLoopRepeatedRejections",
}


def loop_rules(values: dict | None = None) -> dict[str, dict]:
    cm = one(render_chart("prometheus", values), "ConfigMap", "prometheus-config")
    groups = yaml.safe_load(cm["data"]["mlops-loop.yml"])["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"]}


def loop_job(cfg: dict) -> dict:
    return next(j for j in cfg["scrape_configs"] if j["job_name"] == "mlops-loop")


def test_loop_exporter_is_a_static_target_of_its_own_job() -> None:
    job = loop_job(config())
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [{"targets": ["streamlit-exporter:9188"]}]
    assert "kubernetes_sd_configs" not in job
    moved = {"scrape": {"loop": {"jobName": "loop", "service": "ui-exporter", "port": 9300}}}
    job = next(j for j in config(moved)["scrape_configs"] if j["job_name"] == "loop")
    assert job["static_configs"] == [{"targets": ["ui-exporter:9300"]}]
    assert all('job="loop"' in rule["expr"] for rule in loop_rules(moved).values())


def test_loop_target_is_the_streamlit_charts_exporter() -> None:
    """The default target is the Service and port the streamlit chart renders, and that chart's
    exporter's NetworkPolicy admits this chart's pods on it (the UI's admits them nowhere)."""
    streamlit = render_chart("streamlit")
    service = one(streamlit, "Service", "streamlit-exporter")
    (target,) = loop_job(config())["static_configs"][0]["targets"]
    assert target == f"streamlit-exporter:{service['spec']['ports'][0]['port']}"
    server = one(render_chart("prometheus"), "Deployment")
    name = server["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
    peer = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}}

    def admitted(policy: str) -> list[Any]:
        ingress = one(streamlit, "NetworkPolicy", policy)["spec"]["ingress"]
        return [rule["ports"] for rule in ingress if peer in rule["from"]]

    assert admitted("streamlit-exporter") == [[{"port": 9188, "protocol": "TCP"}]]
    assert admitted("streamlit") == []


def test_loop_alert_rules_cover_the_issue() -> None:
    rules = loop_rules()
    assert set(rules) == LOOP_ALERTS
    for rule in rules.values():
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["labels"]["platform"] == "mlops"
        assert rule["annotations"]["summary"]
        assert 'job="mlops-loop"' in rule["expr"]
    # No new data in two hourly runs of the data DAG.
    assert rules["MlopsLoopNoNewData"]["expr"].endswith("> 7200")
    assert "mlops_loop_store_up" in rules["MlopsLoopStoreUnreadable"]["expr"]
    assert "> 0.2" in rules["MlopsLoopHighRejectionShare"]["expr"]
    assert "mlops_loop_drifted_features" in rules["MlopsLoopDriftDetected"]["expr"]
    repeated = rules["MlopsLoopRepeatedRejections"]["expr"]
    assert "[1d]) >= 3" in repeated
    assert 'outcome="promoted"' in repeated


def test_loop_alert_thresholds_come_from_values() -> None:
    values = {
        "alerts": {
            "dataIntervalSeconds": 900,
            "rejectionShareThreshold": 0.5,
            "rejectedDecisions": 5,
            "decisionWindow": "12h",
        }
    }
    rules = loop_rules(values)
    assert rules["MlopsLoopNoNewData"]["expr"].endswith("> 1800")
    assert "> 0.5" in rules["MlopsLoopHighRejectionShare"]["expr"]
    assert "[12h]) >= 5" in rules["MlopsLoopRepeatedRejections"]["expr"]
    assert "50%" in rules["MlopsLoopHighRejectionShare"]["annotations"]["summary"]


def test_loop_scrape_can_be_turned_off() -> None:
    values = {"scrape": {"loop": {"enabled": False}}}
    objects = render_chart("prometheus", values)
    cm = one(objects, "ConfigMap", "prometheus-config")
    assert "mlops-loop.yml" not in cm["data"]
    assert not [j for j in config(values)["scrape_configs"] if j["job_name"] == "mlops-loop"]
    volumes = {v["name"]: v for v in pod_spec(one(objects, "Deployment"))["volumes"]}
    assert [i["key"] for i in volumes["rules"]["configMap"]["items"]] == [
        "mlops-api.yml",
        "airflow.yml",
    ]
    # alerts.enabled=false drops both rule files but keeps the scrape.
    off = render_chart("prometheus", {"alerts": {"enabled": False}})
    assert set(one(off, "ConfigMap")["data"]) == {"prometheus.yml"}
    assert loop_job(config({"alerts": {"enabled": False}}))


# --- Airflow's metrics: job airflow, the airflow chart's statsd-exporter, rule file airflow.yml ---

AIRFLOW_ALERTS = {
    "AirflowMetricsScrapeDown",
    "AirflowMetricsTargetMissing",
    "AirflowDagRunFailed",
    "AirflowSchedulerHeartbeatStopped",
    "AirflowDagImportErrors",
}


def airflow_rules(values: dict | None = None) -> dict[str, dict]:
    cm = one(render_chart("prometheus", values), "ConfigMap", "prometheus-config")
    groups = yaml.safe_load(cm["data"]["airflow.yml"])["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"]}


def airflow_job(cfg: dict, name: str = "airflow") -> dict:
    return next(j for j in cfg["scrape_configs"] if j["job_name"] == name)


def test_every_rule_file_is_mounted() -> None:
    """A rule file in the ConfigMap but not in the rules volume's items is never loaded."""
    for values in ({}, {"scrape": {"loop": {"enabled": False}, "airflow": {"enabled": False}}}):
        objects = render_chart("prometheus", values)
        files = {k for k in one(objects, "ConfigMap")["data"] if k != "prometheus.yml"}
        volumes = {v["name"]: v for v in pod_spec(one(objects, "Deployment"))["volumes"]}
        assert {i["key"] for i in volumes["rules"]["configMap"]["items"]} == files


def test_airflow_exporter_is_a_static_target_of_its_own_job() -> None:
    job = airflow_job(config())
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [{"targets": ["airflow-statsd:9102"]}]
    moved = {"scrape": {"airflow": {"jobName": "af", "service": "orch-statsd", "port": 9300}}}
    job = airflow_job(config(moved), "af")
    assert job["static_configs"] == [{"targets": ["orch-statsd:9300"]}]
    rules = airflow_rules(moved)
    assert set(rules) == AIRFLOW_ALERTS
    assert all('job="af"' in rule["expr"] for rule in rules.values())


def test_airflow_target_is_the_airflow_charts_statsd_exporter() -> None:
    """The default target is the Service and port the airflow chart renders, and the exporter's
    NetworkPolicy admits this chart's pods on that port only (the Airflow pods' policy, not at
    all)."""
    airflow = render_chart("airflow", {"gitSync": {"enabled": False}})
    service = one(airflow, "Service", "airflow-statsd")
    (tcp,) = [p for p in service["spec"]["ports"] if p["protocol"] == "TCP"]
    (target,) = airflow_job(config())["static_configs"][0]["targets"]
    assert target == f"airflow-statsd:{tcp['port']}"
    name = one(render_chart("prometheus"), "Deployment")["spec"]["template"]["metadata"]["labels"][
        "app.kubernetes.io/name"
    ]
    policy = one(airflow, "NetworkPolicy", "airflow-statsd")  # the exporter's own
    assert "prometheus" not in str(one(airflow, "NetworkPolicy", "airflow")["spec"])
    admitted = [
        rule
        for rule in policy["spec"]["ingress"]
        if {"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}} in rule["from"]
    ]
    assert [rule["ports"] for rule in admitted] == [[{"port": tcp["port"], "protocol": "TCP"}]]


def test_airflow_alert_rules_cover_the_issue() -> None:
    rules = airflow_rules()
    assert set(rules) == AIRFLOW_ALERTS
    for rule in rules.values():
        assert 'job="airflow"' in rule["expr"]
        assert rule["labels"]["platform"] == "mlops"
    assert 'state="failed"' in rules["AirflowDagRunFailed"]["expr"]
    assert "[1h]" in rules["AirflowDagRunFailed"]["expr"]
    assert "airflow_scheduler_heartbeat_total" in rules["AirflowSchedulerHeartbeatStopped"]["expr"]
    assert rules["AirflowSchedulerHeartbeatStopped"]["labels"]["severity"] == "critical"
    window = airflow_rules({"alerts": {"dagRunFailureWindow": "30m"}})["AirflowDagRunFailed"]
    assert "[30m]" in window["expr"]
    assert "offset 30m" in window["expr"]


def test_airflow_scrape_can_be_turned_off() -> None:
    values = {"scrape": {"airflow": {"enabled": False}}}
    cm = one(render_chart("prometheus", values), "ConfigMap", "prometheus-config")
    assert "airflow.yml" not in cm["data"]
    assert not [j for j in config(values)["scrape_configs"] if j["job_name"] == "airflow"]
    assert airflow_job(config({"alerts": {"enabled": False}}))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"alerts": {"dagRunFailureWindow": "1 hour"}}, r"/alerts/dagRunFailureWindow"),
        ({"scrape": {"airflow": {"port": "metrics"}}}, r"/scrape/airflow/port.*want integer"),
        ({"scrape": {"airflow": {"colour": "blue"}}}, "additional properties 'colour' not allowed"),
    ],
)
def test_schema_rejects_bad_airflow_values(values: dict, message: str) -> None:
    with pytest.raises(HelmError, match=message):
        render_chart("prometheus", values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"alerts": {"decisionWindow": "1 day"}}, r"/alerts/decisionWindow"),
        ({"alerts": {"rejectionShareThreshold": 1.5}}, r"/alerts/rejectionShareThreshold"),
        ({"alerts": {"dataIntervalSeconds": "1h"}}, r"/alerts/dataIntervalSeconds.*want integer"),
        ({"scrape": {"loop": {"port": "metrics"}}}, r"/scrape/loop/port.*want integer"),
        ({"scrape": {"loop": {"colour": "blue"}}}, "additional properties 'colour' not allowed"),
    ],
)
def test_schema_rejects_bad_loop_values(values: dict, message: str) -> None:
    with pytest.raises(HelmError, match=message):
        render_chart("prometheus", values)


def test_probes_and_port() -> None:
    container = pod_spec(one(render_chart("prometheus"), "Deployment"))["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert container["ports"][0]["containerPort"] == 9090


# `helm test prometheus` (templates/tests/test-connection.yaml): its command, run through the CLI.
# The pod, its NetworkPolicy rule and its `tests` values: test_helm_test_pods.py.


def scraped_job(objects: list[dict[str, Any]], service: str) -> str:
    """The job name of the scrape config that targets ``service`` (by discovery or statically)."""
    cfg = yaml.safe_load(one(objects, "ConfigMap")["data"]["prometheus.yml"])
    (job,) = [
        j["job_name"]
        for j in cfg["scrape_configs"]
        if any(
            r.get("action") == "keep" and r["regex"] == service
            for r in j.get("relabel_configs", [])
        )
        or any(
            t.split(":")[0] == service for s in j.get("static_configs", []) for t in s["targets"]
        )
    ]
    return job


def test_helm_test_asks_for_the_fastapi_scrape_job_through_the_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = render_chart("prometheus")
    (pod,) = helm_test_pods(objects)
    service = one(objects, "Service", "prometheus")
    url, job = helm_test_check_call(pod, "prometheus", monkeypatch)
    assert url == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    assert job == scraped_job(objects, "fastapi") == "fastapi"


@pytest.mark.parametrize("discovery", ["kubernetes", "static"])
def test_helm_test_follows_release_service_and_job_name(
    monkeypatch: pytest.MonkeyPatch, discovery: str
) -> None:
    values = {
        "scrape": {"fastapi": {"jobName": "inference", "service": "api", "discovery": discovery}},
        "service": {"port": 19090},
    }
    objects = render_chart("prometheus", values, release="metrics")
    (pod,) = helm_test_pods(objects)
    assert pod["metadata"]["name"] == "metrics-prometheus-test"
    assert helm_test_check_call(pod, "prometheus", monkeypatch) == (
        "http://metrics-prometheus:19090",
        "inference",
    )
    assert scraped_job(objects, "api") == "inference"


def test_helm_test_check_against_a_real_prometheus(tmp_path: Path) -> None:
    """`mlops check prometheus` against Debian's Prometheus: passes while the job's target is
    up, fails naming the job when it has none, and naming the target when it is down. (The
    chart's own config finds the API through the Kubernetes API, which is not here: a static
    config stands in for it; what the pod calls is checked above.)"""
    port, dead = free_ports(2)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s"},
                "scrape_configs": [
                    {"job_name": "fastapi", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]},
                    {"job_name": "gone", "static_configs": [{"targets": [f"127.0.0.1:{dead}"]}]},
                ],
            }
        )
    )
    server = subprocess.Popen(
        [
            require_tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        said = checks.retrying(lambda: checks.prometheus(url, "fastapi"), within_s=60)
        assert "1 target(s) of job 'fastapi' up" in said
        with pytest.raises(checks.CheckFailed, match="no scrape target of job 'inference'"):
            checks.prometheus(url, "inference")
        with pytest.raises(checks.CheckFailed, match="job 'gone' not up"):
            checks.prometheus(url, "gone")
    finally:
        server.terminate()
        server.wait(timeout=30)
