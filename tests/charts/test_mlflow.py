"""mlflow chart: the tracking server with PostgreSQL metadata and S3 artifacts, migrated by
`mlflow db upgrade` first, started with the same flags as the local platform's server, and its
`helm test` pod (GET /health through the Service, admitted by the NetworkPolicy)."""

from __future__ import annotations

import re

import pytest

from tests.charts.conftest import (
    CHARTS_DIR,
    REPO,
    all_containers,
    env_of,
    helm_test_command,
    one,
    pod_spec,
    render_chart,
)

CHART = "mlflow"


def server_container(values: dict | None = None) -> dict:
    return pod_spec(one(render_chart("mlflow", values), "Deployment", "mlflow"))["containers"][0]


def test_server_flags() -> None:
    container = server_container()
    assert container["command"] == ["mlflow"]
    args = container["args"]
    assert args[:12] == [
        "server",
        "--backend-store-uri",
        "$(MLFLOW_BACKEND_STORE_URI)",
        "--artifacts-destination",
        "s3://mlflow/artifacts",
        "--serve-artifacts",
        "--host",
        "0.0.0.0",
        "--port",
        "5000",
        "--workers",
        "2",
    ]
    assert container["ports"][0]["containerPort"] == 5000


def test_backend_uri_is_built_from_the_secret_without_the_password_in_the_spec() -> None:
    env = env_of(server_container())
    names = list(env)
    uri = env["MLFLOW_BACKEND_STORE_URI"]["value"]
    assert uri == "postgresql+psycopg://$(DB_USER):$(DB_PASSWORD)@$(DB_HOST):$(DB_PORT)/$(DB_NAME)"
    # $(VAR) only expands variables defined earlier in the list.
    for var in re.findall(r"\$\((\w+)\)", uri):
        assert names.index(var) < names.index("MLFLOW_BACKEND_STORE_URI")
    assert env["DB_HOST"]["value"] == "postgres"
    assert env["DB_PORT"]["value"] == "5432"
    assert env["DB_NAME"]["value"] == "mlflow"
    assert env["DB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "mlflow-credentials",
        "key": "db-password",
    }


def test_s3_credentials_and_endpoint() -> None:
    env = env_of(server_container())
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "mlflow-credentials",
        "key": "s3-access-key",
    }
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "s3-secret-key"
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "http://minio:9000"


def test_db_upgrade_runs_first_and_can_be_turned_off() -> None:
    deployment = one(render_chart("mlflow"), "Deployment")
    init = pod_spec(deployment)["initContainers"]
    assert [c["name"] for c in init] == ["db-upgrade"]
    assert 'exec mlflow db upgrade "$MLFLOW_BACKEND_STORE_URI"' in init[0]["args"][0]
    assert "MLFLOW_BACKEND_STORE_URI" in env_of(init[0])
    off = one(render_chart("mlflow", {"dbUpgrade": {"enabled": False}}), "Deployment")
    assert "initContainers" not in pod_spec(off)


def test_probes_use_the_health_endpoint() -> None:
    container = server_container()
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}


def _allowed_hosts(values: dict | None = None) -> list[str]:
    args = server_container(values)["args"]
    return args[args.index("--allowed-hosts") + 1].split(",")


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("mlflow:5000", True),
        ("mlflow", True),
        ("mlflow.mlops.svc.cluster.local:5000", True),
        ("localhost:5000", True),  # kubectl port-forward
        ("127.0.0.1:5000", True),
        ("10.244.0.12:5000", True),  # a pod IP
        ("evil.example.com", False),
        ("mlflow.example.com", False),
    ],
)
def test_allowed_hosts_as_mlflow_itself_reads_them(host: str, allowed: bool) -> None:
    from mlflow.server import security_utils as security

    assert security.is_allowed_host_header(_allowed_hosts(), host) is allowed


def test_extra_allowed_hosts() -> None:
    assert "mlflow.example.com" in _allowed_hosts(
        {"server": {"allowedHosts": ["mlflow.example.com"]}}
    )


def test_same_flags_and_environment_as_the_local_platform() -> None:
    from mlops_platform.local import mlflow_server as local
    from mlops_platform.settings import load_settings

    settings = load_settings()
    local_flags = {a for a in local.server_command(settings) if a.startswith("--")}
    chart_flags = {a for a in server_container()["args"] if a.startswith("--")}
    assert local_flags == chart_flags
    env = env_of(server_container())
    assert set(local.server_env(settings)) <= set(env)
    for name, value in local.server_env(settings).items():
        if "value" in env[name] and name not in ("MLFLOW_S3_ENDPOINT_URL",):
            assert env[name]["value"] == value, name


def test_runs_the_platform_image_with_the_locked_mlflow() -> None:
    """Tag and user of the image: test_dockerfile.py. Its MLflow is the one the lock pins."""
    assert server_container()["image"] == "mlops/platform:0.1.0"
    version = re.search(r"^mlflow==(\S+)$", (REPO / "requirements.lock").read_text(), re.M)
    assert version, "requirements.lock must pin mlflow"
    chart = (CHARTS_DIR / "mlflow" / "Chart.yaml").read_text()
    assert f'appVersion: "{version.group(1)}"' in chart
    for c in all_containers(one(render_chart("mlflow"), "Deployment")):
        assert c["securityContext"]["readOnlyRootFilesystem"] is True


# --- helm test (templates/tests/test-connection.yaml) --------------------------------------------
# The command the pod runs. The pod itself, its NetworkPolicy rule, its `tests` values and that the
# URL is the Service's name and port (also in the umbrella's case): test_helm_test_pods.py.


def test_helm_test_gets_the_health_endpoint_through_the_service() -> None:
    """GET of the Service's name and port at the probes' path: what Airflow, the API and the UI
    call, so a pass says they reach the server too."""
    command = helm_test_command(render_chart(CHART))
    assert command == ["mlops", "check", "http", "http://mlflow:5000/health"]
