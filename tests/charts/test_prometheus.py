"""prometheus chart: scrape of fastapi:8989/metrics (Kubernetes discovery with a namespaced Role,
or a static target), the alert rules, a volume."""

from __future__ import annotations

import yaml

from tests.charts.conftest import by_kind, one, pod_spec, render_chart

REQUIRED_ALERTS = {
    "MlopsApiHighErrorRate",
    "MlopsApiHighLatencyP99",
    "MlopsApiNoProductionModel",
    "MlopsApiInferenceLogDrops",
    "MlopsApiScrapeDown",
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
    assert [i["key"] for i in volumes["rules"]["configMap"]["items"]] == ["mlops-api.yml"]
    assert [i["key"] for i in volumes["config"]["configMap"]["items"]] == ["prometheus.yml"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["rules"] == "/etc/prometheus/rules"
    assert mounts["data"] == "/prometheus"
    assert one(render_chart("prometheus"), "PersistentVolumeClaim", "prometheus-data")


def test_probes_and_port() -> None:
    container = pod_spec(one(render_chart("prometheus"), "Deployment"))["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert container["ports"][0]["containerPort"] == 9090
