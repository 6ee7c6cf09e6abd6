"""mlflow chart: the tracking server with PostgreSQL metadata and S3 artifacts, migrated by
`mlflow db upgrade` first, started with the same flags as the local platform's server, and its
`helm test` pod (GET /health through the Service, admitted by the NetworkPolicy)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.charts.conftest import (
    CHARTS_DIR,
    REPO,
    HelmError,
    all_containers,
    by_kind,
    client_rules,
    env_of,
    helm_test_pods,
    helm_test_rule,
    one,
    pod_labels,
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

# The umbrella's case: release `mlops` and the Service named by fullnameOverride, here with another
# name and port, to show that the test pod follows the chart's own helpers and values.
RENAMED = {"fullnameOverride": "tracking", "service": {"port": 15000}}
# Image and scheduling values the test pod shares with the server.
SCHEDULING = {
    "image": {
        "repository": "registry.example.com/mlops/platform",
        "tag": "0.2.0",
        "pullPolicy": "Always",
    },
    "imagePullSecrets": [{"name": "regcred"}],
    "nodeSelector": {"pool": "apps"},
    "tolerations": [{"key": "apps", "operator": "Exists", "effect": "NoSchedule"}],
}
TEST_LABEL = {"app.kubernetes.io/component": "test"}


def server_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The tracking server, which the Service fronts."""
    return one(objects, "Deployment")


@pytest.mark.parametrize(
    ("values", "release"), [({}, CHART), (RENAMED, "mlops")], ids=["guide", "umbrella"]
)
def test_helm_test_gets_the_health_endpoint_through_the_service(
    values: dict[str, Any], release: str
) -> None:
    """GET of the Service's name and port at the probes' path: what Airflow, the API and the UI
    call, so a pass says they reach the server too."""
    objects = render_chart(CHART, values, release=release)
    service, server = one(objects, "Service"), server_of(objects)
    assert service["spec"]["selector"].items() <= pod_labels(server).items()
    name, (port,) = service["metadata"]["name"], service["spec"]["ports"]
    probe = pod_spec(server)["containers"][0]["readinessProbe"]["httpGet"]
    (pod,) = helm_test_pods(objects)
    (check,) = pod["spec"]["containers"]
    assert check["command"] == [
        "mlops",
        "check",
        "http",
        f"http://{name}:{port['port']}{probe['path']}",
    ]


def test_helm_test_pod_is_a_hardened_hook_like_the_server() -> None:
    """A `helm test` hook (kept when it fails, for `kubectl logs`) on the server's image,
    scheduling and security contexts: read-only root, /tmp writable as HOME, no Secret."""
    objects = render_chart(CHART, SCHEDULING)
    pod, server = one(objects, "Pod", "mlflow-test"), server_of(objects)
    assert pod["metadata"]["annotations"] == {
        "helm.sh/hook": "test",
        "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
    }
    assert pod["metadata"]["labels"] == {**server["metadata"]["labels"], **TEST_LABEL}
    spec, server_spec = pod["spec"], pod_spec(server)
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    for key in ("securityContext", "imagePullSecrets", "nodeSelector", "tolerations"):
        assert spec[key] == server_spec[key], key
    (check,) = spec["containers"]
    main = server_spec["containers"][0]
    assert check["image"] == main["image"] == "registry.example.com/mlops/platform:0.2.0"
    assert check["imagePullPolicy"] == main["imagePullPolicy"] == "Always"
    assert check["securityContext"] == main["securityContext"]
    assert check["securityContext"]["readOnlyRootFilesystem"] is True
    assert check["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    }
    assert env_of(check)["HOME"]["value"] == "/tmp"
    assert all("valueFrom" not in item for item in check["env"]), "no Secret needed"
    assert check["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert [v["name"] for v in spec["volumes"] if "emptyDir" in v] == ["tmp"]


@pytest.mark.parametrize("clients", [None, []], ids=["default-clients", "no-client"])
def test_network_policy_admits_the_helm_test_pod_on_the_service_port(
    clients: list[str] | None,
) -> None:
    """Its own rule, on the server's port, also when no client is listed (`ingress: []`
    otherwise); the selector picks this chart's test pod, not another chart's of the same
    umbrella release."""
    values = {} if clients is None else {"networkPolicy": {"allowedClients": clients}}
    objects = render_chart(CHART, {**RENAMED, **values}, release="mlops")
    pod, server = one(objects, "Pod"), server_of(objects)
    policy = one(objects, "NetworkPolicy")
    # A policy matches the pod's port, after the Service's translation.
    (port,) = one(objects, "Service")["spec"]["ports"]
    pod_ports = {p["name"]: p["containerPort"] for p in pod_spec(server)["containers"][0]["ports"]}
    rule = helm_test_rule(CHART, [pod_ports[port["targetPort"]]], release="mlops")
    assert policy["spec"]["ingress"] == [*client_rules(policy), rule]
    assert len(client_rules(policy)) == (0 if clients == [] else 1)
    labels = rule["from"][0]["podSelector"]["matchLabels"]
    assert labels.items() <= pod["metadata"]["labels"].items()
    assert not labels.items() <= pod_labels(server).items(), "the test pod, not the server"


def test_tests_disabled_render_no_pod_and_no_extra_peer() -> None:
    on, off = render_chart(CHART), render_chart(CHART, {"tests": {"enabled": False}})
    assert by_kind(off, "Pod") == []
    assert one(off, "NetworkPolicy")["spec"]["ingress"] == client_rules(one(on, "NetworkPolicy"))
    rest = [o for o in on if o["kind"] not in {"Pod", "NetworkPolicy"}]
    assert rest == [o for o in off if o["kind"] != "NetworkPolicy"]
    nobody = {"tests": {"enabled": False}, "networkPolicy": {"allowedClients": []}}
    assert one(render_chart(CHART, nobody), "NetworkPolicy")["spec"]["ingress"] == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"tests": {"enabeld": False}}, "additional properties 'enabeld' not allowed"),
        ({"tests": {"enabled": "no"}}, r"/tests/enabled.*got string, want boolean"),
        (
            {"tests": {"resources": {"limits": None}}},
            r"/tests/resources.: missing property .limits.",
        ),
    ],
)
def test_schema_rejects_unknown_and_bad_tests_values(values: dict, message: str) -> None:
    with pytest.raises(HelmError, match=message):
        render_chart(CHART, values)
