"""The `helm test` pod of every chart with a Service (charts/README.md, `templates/tests/`): one
hook Pod, `<fullname>-test`, deleted before the next run and on success but kept when it fails
(for `kubectl logs`), labelled as the chart's server plus app.kubernetes.io/component=test; run as
the platform image's user with a read-only root, no token, no service links, HOME on a /tmp
emptyDir, no port, and the server's imagePullSecrets, nodeSelector and tolerations. It runs
`mlops check <check>` from the platform image — `tests.image` in the charts that run an upstream
image, the chart's own `image` in ours — against the Service by name and port, with no other
environment than HOME and the clients' Secret references. The chart's NetworkPolicy admits it
(and no other chart's test pod of the same release) on the pod port behind the Service's first
port (conftest.helm_test_rule), after the clients' rule; `tests.enabled=false` removes both.

Checked chart by chart as the guide installs it, under another release name, and as the umbrella
does (release `mlops`, a fullnameOverride; here another Service port too); the rest of each
command, its wiring to the CLI and the checks against real servers are test_<chart>.py's, the
rest of each policy test_network_policies.py's."""

from __future__ import annotations

from typing import Any

import pytest

from tests.charts.conftest import (
    CHARTS_DIR,
    COMPONENTS,
    FLOWS,
    HelmError,
    by_kind,
    client_rules,
    helm_test_command,
    helm_test_pods,
    helm_test_rule,
    helm_test_rules,
    is_exporter_object,
    one,
    pod_labels,
    pod_spec,
    render_chart,
    workloads,
)

# Every chart with a Service has a test pod: the servers of FLOWS, in the guide's order.
TEST_CHARTS = [chart for chart in COMPONENTS if chart in FLOWS]
# Charts that run an upstream server image: their test pod's image is `tests.image`.
UPSTREAM = {"postgres", "redis", "minio", "prometheus", "grafana"}
# `mlops check <check> <address>`: the address names the Service ({name}, {port}) as the clients
# call it; {probe} is the path of the server's readiness probe.
CALLS = {
    "postgres": ("postgres", "{name} --port {port}"),
    "redis": ("redis", "{name} --port {port}"),
    "minio": ("s3", "http://{name}:{port}"),
    "mlflow": ("http", "http://{name}:{port}{probe}"),
    "prometheus": ("prometheus", "http://{name}:{port}"),
    "grafana": ("grafana", "http://{name}:{port}"),
    "airflow": ("http", "http://{name}:{port}{probe}"),
    "fastapi": ("fastapi", "http://{name}:{port}"),
    "streamlit": ("http", "http://{name}:{port}{probe}"),
    "datasource": ("http", "http://{name}:{port}{probe}"),
}
# The umbrella's case: release `mlops` and the Service named by fullnameOverride, here with another
# name and port, to show that the test pod follows the chart's own helpers and values.
RENAMED = {
    "postgres": {"fullnameOverride": "database", "service": {"port": 15432}},
    "redis": {"fullnameOverride": "broker", "service": {"port": 16379}},
    "minio": {"fullnameOverride": "store", "service": {"port": 19000}},
    "mlflow": {"fullnameOverride": "tracking", "service": {"port": 15000}},
    "prometheus": {"fullnameOverride": "metrics", "service": {"port": 19090}},
    "grafana": {"fullnameOverride": "dashboards", "service": {"port": 13000}},
    "airflow": {"fullnameOverride": "orchestrator", "service": {"port": 18080}},
    "fastapi": {"fullnameOverride": "inference", "service": {"port": 18989}},
    "streamlit": {"fullnameOverride": "ui", "service": {"port": 18501}},
    "datasource": {"fullnameOverride": "simulator", "service": {"port": 8080}},
}
# The pod port the policy opens to the test pod: the one behind the Service's first port (S3 for
# minio, the api-server for Airflow, 8000 behind datasource's 80), whatever the Service's port.
POD_PORT = {
    "postgres": 5432,
    "redis": 6379,
    "minio": 9000,
    "mlflow": 5000,
    "prometheus": 9090,
    "grafana": 3000,
    "airflow": 8080,
    "fastapi": 8989,
    "streamlit": 8501,
    "datasource": 8000,
}
# The clients the policy admits by default, in the order of the chart's values (a rule before the
# test pod's); none for Grafana and the UI (port-forward).
DEFAULT_CLIENTS = {
    "postgres": ["airflow", "mlflow", "fastapi", "streamlit", "streamlit-exporter"],
    "redis": ["airflow"],
    "minio": ["mlflow", "minio"],
    "mlflow": ["airflow", "fastapi", "streamlit"],
    "prometheus": ["grafana"],
    "grafana": [],
    "airflow": ["airflow"],
    "fastapi": ["streamlit", "airflow", "prometheus"],
    "streamlit": [],
    "datasource": ["airflow"],
}
# The pod's Secret references, variable -> (Secret, key): the logins its clients use (each
# database's owner, Redis' password, MLflow's S3 identity, Grafana's admin); none for the rest.
SECRET_ENV: dict[str, dict[str, tuple[str, str]]] = {
    "postgres": {
        f"{db.upper()}_{part.upper()}": ("postgres-credentials", f"{db}-{part}")
        for db in ("airflow", "mlflow", "rawdata", "cleandata")
        for part in ("username", "password")
    },
    "redis": {"REDIS_PASSWORD": ("redis-credentials", "redis-password")},
    "minio": {
        "AWS_ACCESS_KEY_ID": ("minio-credentials", "mlflow-access-key"),
        "AWS_SECRET_ACCESS_KEY": ("minio-credentials", "mlflow-secret-key"),
    },
    "grafana": {
        "GRAFANA_USER": ("grafana-credentials", "admin-user"),
        "GRAFANA_PASSWORD": ("grafana-credentials", "admin-password"),
    },
}
# The /tmp emptyDir's size limit, in the charts that set one (scratchSizeLimit).
SCRATCH_LIMIT = {"fastapi": "1Gi", "streamlit": "256Mi", "datasource": "256Mi"}
# Charts whose Service selects the server's component only, so it never selects the test pod.
SERVICE_BY_COMPONENT = {"minio", "airflow"}

# Deleted before the next run and once it passes; a failed pod stays (no hook-failed) for its logs.
HOOK = {
    "helm.sh/hook": "test",
    "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
}
TEST_LABEL = {"app.kubernetes.io/component": "test"}
# The platform image's user (docker/Dockerfile).
PLATFORM_USER = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
# The container hardening of every chart (charts/README.md, "shared contract").
HARDENED = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
RESOURCES = {
    "requests": {"cpu": "50m", "memory": "128Mi"},
    "limits": {"cpu": "500m", "memory": "512Mi"},
}
DEFAULT_IMAGE = "mlops/platform:0.1.0"
IMAGE = {
    "repository": "registry.example.com/mlops/platform",
    "tag": "0.2.0",
    "pullPolicy": "Always",
}
# Scheduling values the test pod shares with the server.
PLACEMENT = {
    "imagePullSecrets": [{"name": "regcred"}],
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
}

per_chart = pytest.mark.parametrize("chart", TEST_CHARTS)
# How a chart is installed: alone as in the guide (release = chart), under another release name
# (fullname <release>-<chart>), or as in the umbrella (release `mlops`, RENAMED).
per_install = pytest.mark.parametrize("install", ["guide", "release", "umbrella"])


def release_of(chart: str, install: str) -> str:
    return chart if install == "guide" else "mlops"


def fullname_of(chart: str, install: str) -> str:
    names = {"guide": chart, "release": f"mlops-{chart}"}
    return names.get(install) or RENAMED[chart]["fullnameOverride"]


def render(chart: str, install: str, values: dict[str, Any] | None = None) -> list[dict]:
    renamed = RENAMED[chart] if install == "umbrella" else {}
    return render_chart(chart, {**renamed, **(values or {})}, release=release_of(chart, install))


def main_policy(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The NetworkPolicy of the chart's main server (not an exporter's: conftest
    EXPORTER_FLOWS)."""
    (policy,) = [p for p in by_kind(objects, "NetworkPolicy") if not is_exporter_object(p)]
    return policy


def served(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Service the clients call (not a headless one, nor an exporter's: conftest
    EXPORTER_FLOWS) and the server workload it fronts."""
    (service,) = [
        s
        for s in by_kind(objects, "Service")
        if s["spec"].get("clusterIP") != "None" and not is_exporter_object(s)
    ]
    selector = service["spec"]["selector"].items()
    (server,) = [
        w
        for w in workloads(objects)
        if w["kind"] in {"Deployment", "StatefulSet"} and selector <= pod_labels(w).items()
    ]
    return service, server


def the_test_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The render's one Pod, which is the `helm test` hook."""
    (pod,) = helm_test_pods(objects)
    assert by_kind(objects, "Pod") == [pod]
    return pod


def test_every_chart_with_a_service_and_only_those_have_a_test_pod() -> None:
    assert set(TEST_CHARTS) == set(CALLS) == set(RENAMED) == set(POD_PORT) == set(DEFAULT_CLIENTS)
    assert UPSTREAM | set(SECRET_ENV) | set(SCRATCH_LIMIT) | SERVICE_BY_COMPONENT <= set(FLOWS)
    templates = CHARTS_DIR.glob("*/templates/tests/test-connection.yaml")
    assert {path.parents[2].name for path in templates} == set(TEST_CHARTS)
    for chart in COMPONENTS:
        objects = render_chart(chart)
        assert len(helm_test_pods(objects)) == (chart in TEST_CHARTS), chart
        assert bool(by_kind(objects, "Service")) == (chart in TEST_CHARTS), chart


@per_chart
@per_install
def test_helm_test_pod_is_a_hook_named_and_labelled_after_the_server(
    chart: str, install: str
) -> None:
    objects = render(chart, install)
    pod, (_, server) = the_test_pod(objects), served(objects)
    assert pod["metadata"]["name"] == f"{fullname_of(chart, install)}-test"
    assert pod["metadata"]["annotations"] == HOOK
    # The server's labels (the api-server's for Airflow) with the test component.
    assert pod["metadata"]["labels"] == {**server["metadata"]["labels"], **TEST_LABEL}


@per_chart
@per_install
def test_helm_test_calls_the_service_by_name_and_port(chart: str, install: str) -> None:
    """As the clients call it: the Service's name and port (not the pod's), at the readiness
    probe's path for a plain GET; the rest of the command is test_<chart>.py's."""
    objects = render(chart, install)
    service, server = served(objects)
    (port, *_) = service["spec"]["ports"]
    assert service["metadata"]["name"].startswith(fullname_of(chart, install))
    if install == "umbrella":
        assert port["port"] == RENAMED[chart]["service"]["port"]
    probe = pod_spec(server)["containers"][0]["readinessProbe"].get("httpGet", {})
    check, address = CALLS[chart]
    expected = address.format(
        name=service["metadata"]["name"], port=port["port"], probe=probe.get("path")
    )
    command = helm_test_command([the_test_pod(objects)])
    assert command[: 3 + len(expected.split())] == ["mlops", "check", check, *expected.split()]


@per_chart
def test_helm_test_pod_is_hardened_and_placed_like_the_server(chart: str) -> None:
    """Read-only root with HOME on the /tmp emptyDir, no token, no service links, not restarted,
    on the server's nodes with its pull secrets; logins only through Secret references."""
    objects = render_chart(chart, PLACEMENT)
    pod, (service, server) = the_test_pod(objects), served(objects)
    spec, server_spec = pod["spec"], pod_spec(server)
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert spec["securityContext"] == PLATFORM_USER
    for key, value in PLACEMENT.items():
        assert spec[key] == server_spec[key] == value, key
    (container,) = spec["containers"]
    assert container["securityContext"] == HARDENED
    if chart not in UPSTREAM:  # the server runs the same image: the same contexts
        assert spec["securityContext"] == server_spec["securityContext"]
        assert container["securityContext"] == server_spec["containers"][0]["securityContext"]
    assert container["resources"] == RESOURCES
    secrets = [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for name, (secret, key) in SECRET_ENV.get(chart, {}).items()
    ]
    # HOME is the only literal: nothing secret on the command line or in a value.
    assert container["env"] == [{"name": "HOME", "value": "/tmp"}, *secrets]
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    scratch = {"sizeLimit": SCRATCH_LIMIT[chart]} if chart in SCRATCH_LIMIT else {}
    assert spec["volumes"] == [{"name": "tmp", "emptyDir": scratch}]
    assert "ports" not in container, "a Service that selects it must find no port here"
    if chart in SERVICE_BY_COMPONENT:
        selector = service["spec"]["selector"]
        assert not selector.items() <= pod["metadata"]["labels"].items()


@per_chart
def test_helm_test_pod_runs_the_platform_image(chart: str) -> None:
    """Ours take the chart's `image`, which the server runs too; the charts of an upstream
    server take `tests.image`, which their `image` does not change."""
    (default,) = the_test_pod(render_chart(chart))["spec"]["containers"]
    assert (default["image"], default["imagePullPolicy"]) == (DEFAULT_IMAGE, "IfNotPresent")
    values = {"tests": {"image": IMAGE}} if chart in UPSTREAM else {"image": IMAGE}
    objects = render_chart(chart, values)
    (container,) = the_test_pod(objects)["spec"]["containers"]
    image = (container["image"], container["imagePullPolicy"])
    assert image == ("registry.example.com/mlops/platform:0.2.0", "Always")
    main = pod_spec(served(objects)[1])["containers"][0]
    if chart not in UPSTREAM:
        assert (main["image"], main["imagePullPolicy"]) == image
        return
    assert main["image"] != container["image"]
    (same,) = the_test_pod(render_chart(chart, {"image": IMAGE}))["spec"]["containers"]
    assert (same["image"], same["imagePullPolicy"]) == (DEFAULT_IMAGE, "IfNotPresent")


@per_chart
@per_install
@pytest.mark.parametrize("clients", [None, []], ids=["default-clients", "no-client"])
def test_network_policy_admits_the_helm_test_pod_on_the_port_it_calls(
    chart: str, install: str, clients: list[str] | None
) -> None:
    """Its own rule after the clients', also when no client is listed (`ingress: []`
    otherwise); the selector picks this chart's test pod, not another chart's of the same
    umbrella release, nor the server."""
    values = {} if clients is None else {"networkPolicy": {"allowedClients": clients}}
    objects = render(chart, install, values)
    pod, (service, server) = the_test_pod(objects), served(objects)
    policy = main_policy(objects)
    # A policy matches the pod's port, after the Service's translation.
    target = service["spec"]["ports"][0]["targetPort"]
    ports = {p["name"]: p["containerPort"] for p in pod_spec(server)["containers"][0]["ports"]}
    assert ports[target] == POD_PORT[chart]
    rule = helm_test_rule(chart, [POD_PORT[chart]], release=release_of(chart, install))
    assert policy["spec"]["ingress"] == [*client_rules(policy), rule]
    admitted = DEFAULT_CLIENTS[chart] if clients is None else clients
    peers = [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": n}}} for n in admitted]
    assert [peer for r in client_rules(policy) for peer in r["from"]] == peers
    assert len(client_rules(policy)) == (1 if admitted else 0)
    labels = rule["from"][0]["podSelector"]["matchLabels"]
    assert labels.items() <= pod["metadata"]["labels"].items()
    assert not labels.items() <= pod_labels(server).items(), "the test pod, not the server"


@per_chart
def test_tests_disabled_render_no_pod_and_no_extra_peer(chart: str) -> None:
    on, off = render_chart(chart), render_chart(chart, {"tests": {"enabled": False}})
    assert by_kind(off, "Pod") == []
    policy = one(off, "NetworkPolicy", chart)
    assert helm_test_rules(policy) == []
    assert policy["spec"]["ingress"] == client_rules(main_policy(on))
    # An exporter's policy (conftest.EXPORTER_NAMES) has no test rule either way.
    rest = [o for o in on if o["kind"] != "Pod" and o is not main_policy(on)]
    assert rest == [o for o in off if o is not policy]
    nobody = {"tests": {"enabled": False}, "networkPolicy": {"allowedClients": []}}
    assert main_policy(render_chart(chart, nobody))["spec"]["ingress"] == []


# Values no chart takes under `tests`: name -> (values, helm's error).
BAD_TESTS = {
    "typo": ({"enabeld": False}, r"/tests.*additional properties 'enabeld' not allowed"),
    "unknown": ({"colour": "blue"}, r"/tests.*additional properties 'colour' not allowed"),
    "yes": ({"enabled": "yes"}, r"/tests/enabled.*got string, want boolean"),
    "no": ({"enabled": "no"}, r"/tests/enabled.*got string, want boolean"),
    "no-limits": ({"resources": {"limits": None}}, r"/tests/resources.: missing property .limits."),
}
# `tests.image` is the upstream charts' own; ours run the chart's image and have none.
BAD_UPSTREAM_TESTS = {
    "tag-number": ({"image": {"tag": 1}}, r"/tests/image/tag.*got number, want string"),
    "tag-latest": ({"image": {"tag": "latest"}}, r"/tests/image/tag"),
}
BAD_OWN_TESTS = {"image": ({"image": IMAGE}, r"/tests.*additional properties 'image' not allowed")}
BAD_VALUES = [
    pytest.param(chart, tests, error, id=f"{chart}-{name}")
    for chart in TEST_CHARTS
    for name, (tests, error) in {
        **BAD_TESTS,
        **(BAD_UPSTREAM_TESTS if chart in UPSTREAM else BAD_OWN_TESTS),
    }.items()
]


@pytest.mark.parametrize(("chart", "tests", "error"), BAD_VALUES)
def test_schema_rejects_bad_tests_values(chart: str, tests: dict[str, Any], error: str) -> None:
    with pytest.raises(HelmError, match=error):
        render_chart(chart, {"tests": tests})
