"""fastapi chart: `mlops serve api` from the app image on fastapi:8989, probes on the API's own
health endpoints, settings as MLOPS_* variables the package accepts, credentials from the secrets
chart, autoscaler, disruption budget, scrape annotations and the `helm test` pod (its
NetworkPolicy: test_network_policies.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from mlops_platform.settings import Settings
from tests.charts.conftest import (
    CHARTS_DIR,
    REPO,
    HelmError,
    by_kind,
    env_of,
    helm_test_command,
    one,
    pod_labels,
    pod_spec,
    readme_secret_keys,
    render_chart,
    settings_of,
)

CHART = "fastapi"
SECRET = "fastapi-credentials"


def objects(values: dict | None = None) -> list[dict[str, Any]]:
    return render_chart(CHART, values)


def deployment(values: dict | None = None) -> dict[str, Any]:
    return one(objects(values), "Deployment", CHART)


def container(values: dict | None = None) -> dict[str, Any]:
    return pod_spec(deployment(values))["containers"][0]


def test_service_and_container_port() -> None:
    rendered = objects()
    service = one(rendered, "Service", "fastapi")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8989, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"].items() <= pod_labels(deployment()).items()
    assert container()["ports"] == [{"name": "http", "containerPort": 8989, "protocol": "TCP"}]


def test_runs_mlops_serve_api() -> None:
    c = container()
    assert c["command"] == ["mlops"]
    assert c["args"] == ["serve", "api", "--host", "0.0.0.0", "--port", "8989"]
    assert c["image"] == "mlops/platform:0.1.0"


def test_probes_use_the_api_health_endpoints_that_exist() -> None:
    c = container()
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # Loading a model takes time: the startup budget is well above the app's own first-load wait.
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
    from mlops_platform.serving.app import create_app

    paths = {route.path for route in create_app(Settings()).routes}
    assert {"/healthz", "/readyz", "/metrics"} <= paths


def test_environment_is_settings_the_package_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    env = env_of(container())
    settings = settings_of(env, monkeypatch)
    assert settings.api_workers == 1
    assert settings.mlflow_tracking_uri == "http://mlflow:5000"
    assert settings.model_name == "house_price"
    assert settings.model_alias == "production"
    assert settings.model_poll_interval_s == 30
    assert settings.raw_db_url.hosts()[0]["host"] == "postgres"
    assert settings.raw_db_url.hosts()[0]["port"] == 5432
    assert settings.raw_db_url.path == "/rawdata"
    assert settings.api_token == "secret-mlops-api-token"
    assert (settings.explain_concurrency, settings.explain_wait_s) == (2, 5)


def test_values_reach_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = env_of(
        container(
            {
                "database": {"host": "db.example.org", "port": 6432, "name": "raw"},
                "mlflow": {"trackingUri": "http://registry:5000", "modelAlias": "champion"},
                "api": {
                    "workers": 3,
                    "modelPollIntervalSeconds": 5,
                    "inferenceLogQueueSize": 2000000,
                    "explainConcurrency": 3,
                    "explainWaitSeconds": 0.5,
                },
            }
        )
    )
    assert env["MLOPS_INFERENCE_LOG_QUEUE_SIZE"]["value"] == "2000000"  # not 2e+06
    settings = settings_of(env, monkeypatch)
    assert settings.api_workers == 3
    assert settings.model_poll_interval_s == 5
    assert settings.model_alias == "champion"
    assert (settings.explain_concurrency, settings.explain_wait_s) == (3, 0.5)
    assert settings.mlflow_tracking_uri == "http://registry:5000"
    host = settings.raw_db_url.hosts()[0]
    assert (host["host"], host["port"], settings.raw_db_url.path) == (
        "db.example.org",
        6432,
        "/raw",
    )


def test_credentials_come_from_the_contract_secret_and_never_appear() -> None:
    env = env_of(container())
    refs = {
        name: item["valueFrom"]["secretKeyRef"] for name, item in env.items() if "valueFrom" in item
    }
    assert refs == {
        "MLOPS_API_TOKEN": {"name": SECRET, "key": "hook-token"},
        "RAW_DB_USER": {"name": SECRET, "key": "rawdata-username"},
        "RAW_DB_PASSWORD": {"name": SECRET, "key": "rawdata-password"},
    }
    url = env["MLOPS_RAW_DB_URL"]["value"]
    assert url == "postgresql+psycopg://$(RAW_DB_USER):$(RAW_DB_PASSWORD)@postgres:5432/rawdata"
    names = list(env)
    for var in re.findall(r"\$\((\w+)\)", url):  # $(VAR) expands only variables defined earlier
        assert names.index(var) < names.index("MLOPS_RAW_DB_URL")
    for name, item in env.items():
        if re.search(r"PASSWORD|TOKEN|SECRET", name):
            assert "value" not in item, f"{name} must come from a Secret"
    # The keys are the contract's (charts/README.md) and the secrets chart makes them.
    contract = readme_secret_keys()
    produced = {
        s["metadata"]["name"]: set(s["data"]) for s in by_kind(render_chart("secrets"), "Secret")
    }
    for ref in refs.values():
        assert ref["key"] in contract[ref["name"]], f"{ref} is not in charts/README.md"
        assert ref["key"] in produced[ref["name"]], f"{ref} is not made by the secrets chart"


def test_read_only_root_with_writable_tmp_and_home() -> None:
    c = container()
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in pod_spec(deployment())["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    home = env_of(c)["HOME"]["value"]
    for path in ("/tmp", home):
        assert path in mounts, f"{path} must be writable"
        assert "emptyDir" in volumes[mounts[path]]


def test_autoscaler_off_by_default() -> None:
    rendered = objects()
    assert by_kind(rendered, "HorizontalPodAutoscaler") == []
    assert one(rendered, "Deployment")["spec"]["replicas"] == 1
    assert deployment({"replicaCount": 3})["spec"]["replicas"] == 3


def test_autoscaler_on_owns_the_replicas() -> None:
    values = {
        "replicaCount": 3,
        "autoscaling": {
            "enabled": True,
            "minReplicas": 2,
            "maxReplicas": 5,
            "targetCPUUtilizationPercentage": 60,
        },
    }
    rendered = objects(values)
    assert "replicas" not in one(rendered, "Deployment")["spec"]
    hpa = one(rendered, "HorizontalPodAutoscaler", "fastapi")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "fastapi",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 60},
            },
        }
    ]
    values["autoscaling"]["targetMemoryUtilizationPercentage"] = 80
    metrics = one(objects(values), "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert [m["resource"]["name"] for m in metrics] == ["cpu", "memory"]


def test_autoscaler_bounds_are_checked() -> None:
    with pytest.raises(HelmError, match=r"minReplicas .* above autoscaling\.maxReplicas"):
        objects({"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}})


def test_disruption_budget_lets_a_single_replica_drain() -> None:
    rendered = objects()
    pdb = one(rendered, "PodDisruptionBudget", "fastapi")
    # maxUnavailable 1 (not minAvailable 1): one replica can still be evicted by a node drain.
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels(deployment()).items()
    assert (
        by_kind(objects({"podDisruptionBudget": {"enabled": False}}), "PodDisruptionBudget") == []
    )
    pct = one(objects({"podDisruptionBudget": {"maxUnavailable": "25%"}}), "PodDisruptionBudget")
    assert pct["spec"]["maxUnavailable"] == "25%"


def test_scrape_annotations_match_the_metrics_endpoint_and_the_prometheus_chart() -> None:
    annotations = deployment()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(container()["ports"][0]["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"
    scrape = yaml.safe_load((CHARTS_DIR / "prometheus" / "values.yaml").read_text())["scrape"]
    assert (scrape["fastapi"]["service"], scrape["fastapi"]["port"]) == ("fastapi", 8989)
    assert scrape["fastapi"]["path"] == annotations["prometheus.io/path"]
    off = deployment({"metrics": {"podAnnotations": False}, "podAnnotations": {"team": "ml"}})
    assert off["spec"]["template"]["metadata"]["annotations"] == {"team": "ml"}


def test_ingress_is_optional() -> None:
    assert by_kind(objects(), "Ingress") == []
    ingress = one(
        objects({"ingress": {"enabled": True, "host": "api.example.com", "tlsSecretName": "tls"}}),
        "Ingress",
    )
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "api.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": "fastapi",
        "port": {"name": "http"},
    }
    assert ingress["spec"]["tls"] == [{"hosts": ["api.example.com"], "secretName": "tls"}]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"api": {"wrokers": 2}}, "additional properties 'wrokers' not allowed"),
        ({"autoscaling": {"enabeld": True}}, "additional properties 'enabeld' not allowed"),
        ({"api": {"workers": "two"}}, r"/api/workers.*got string, want integer"),
        ({"api": {"workers": 0}}, r"/api/workers.*minimum"),
        ({"api": {"explainConcurrency": 0}}, r"/api/explainConcurrency.*minimum"),
        ({"autoscaling": {"enabled": "yes"}}, r"/autoscaling/enabled.*got string, want boolean"),
        ({"podDisruptionBudget": {"maxUnavailable": 0}}, r"/podDisruptionBudget/maxUnavailable"),
        ({"networkPolicy": {"allowedClients": "airflow"}}, r"got string, want array"),
        ({"mlflow": {"trackingUri": "mlflow:5000"}}, r"/mlflow/trackingUri"),
        ({"database": {"port": "5432"}}, r"/database/port.*got string, want integer"),
    ],
)
def test_schema_rejects_typos_and_bad_types(values: dict, message: str) -> None:
    with pytest.raises(HelmError, match=message):
        objects(values)


def test_app_version_is_the_package_version() -> None:
    """The image's tag and user: test_dockerfile.py."""
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert version
    chart = yaml.safe_load((CHARTS_DIR / CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == version.group(1)


# --- helm test (templates/tests/test-connection.yaml) --------------------------------------------
# The command the pod runs. The pod itself, its NetworkPolicy rule, its `tests` values and that the
# URL is the Service's name and port (also in the umbrella's case): test_helm_test_pods.py.


def test_helm_test_checks_the_api_through_the_service() -> None:
    """`mlops check fastapi` on the Service's name and port, as the UI, Airflow and
    Prometheus call it; the check adds the paths (readiness, then the model and a prediction)."""
    command = helm_test_command(render_chart(CHART))
    assert command == ["mlops", "check", "fastapi", "http://fastapi:8989"]


def test_helm_test_check_asks_what_the_readiness_probe_asks() -> None:
    """The pod passes only where the Service would route: `mlops check fastapi` GETs /readyz
    first (tests/integration/test_api.py runs the check against the real API)."""
    (container,) = pod_spec(deployment())["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert '/readyz"' in (REPO / "src" / "mlops_platform" / "checks.py").read_text()
