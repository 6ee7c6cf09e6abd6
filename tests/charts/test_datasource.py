"""datasource chart: the simulator (`mlops datasource serve`) on datasource:80 -> 8000, one pod
(its batch counters live in memory), MLOPS_SIM_* settings whose schema ranges are the package's
own, probes on the app's /healthz, no credentials, a `helm test` pod (its NetworkPolicy,
admitting Airflow and that pod: test_network_policies.py)."""

from __future__ import annotations

import json
from typing import Any

import annotated_types
import pytest
from fastapi.testclient import TestClient

from mlops_platform.settings import Settings
from tests.charts.conftest import (
    CHARTS_DIR,
    HelmError,
    by_kind,
    client_rules,
    env_of,
    helm_test_pods,
    helm_test_rule,
    one,
    pod_labels,
    pod_spec,
    render_chart,
    settings_of,
)

CHART = "datasource"
# values.yaml key under `simulator` -> Settings field (MLOPS_SIM_*).
FIELDS = {
    "batches": "sim_batches",
    "batchSize": "sim_batch_size",
    "seed": "sim_seed",
    "driftAt": "sim_drift_at",
    "driftStrength": "sim_drift_strength",
    "dirtyRate": "sim_dirty_rate",
}


def objects(values: dict | None = None) -> list[dict[str, Any]]:
    return render_chart(CHART, values)


def deployment(values: dict | None = None) -> dict[str, Any]:
    return one(objects(values), "Deployment", CHART)


def container(values: dict | None = None) -> dict[str, Any]:
    return pod_spec(deployment(values))["containers"][0]


def test_service_80_targets_8000() -> None:
    service = one(objects(), "Service", "datasource")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"].items() <= pod_labels(deployment()).items()
    # A non-root process cannot bind 80: the pod listens on 8000.
    assert container()["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]


def test_runs_mlops_datasource_serve() -> None:
    c = container()
    assert c["command"] == ["mlops"]
    assert c["args"] == ["datasource", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert c["image"] == "mlops/platform:0.1.0"


def test_one_pod_replaced_not_rolled() -> None:
    """Which batch comes next lives in the process: two pods would serve batches twice."""
    spec = deployment()["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    with pytest.raises(HelmError, match="additional properties 'replicaCount' not allowed"):
        objects({"replicaCount": 2})


def test_probes_use_an_endpoint_the_app_has(monkeypatch: pytest.MonkeyPatch) -> None:
    c = container()
    paths = set()
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["port"] == "http"
        paths.add(c[probe]["httpGet"]["path"])
    assert paths == {"/healthz"}
    from mlops_platform.datasource.app import app_from_settings

    app = app_from_settings(settings_of(env_of(c), monkeypatch))
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200


def test_defaults_are_the_package_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    env = env_of(container())
    assert "MLOPS_SIM_CSV" not in env
    settings = settings_of(env, monkeypatch)
    defaults = Settings.model_fields
    for key, field in FIELDS.items():
        assert getattr(settings, field) == defaults[field].default, key


def test_values_reach_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    simulator = {
        "batches": 10000,
        "batchSize": 1000000,
        "seed": 1234567890123,
        "driftAt": 3,
        "driftStrength": 2.5,
        "dirtyRate": 0.2,
        "csvPath": "/data/listings.csv",
    }
    env = env_of(container({"simulator": simulator}))
    assert env["MLOPS_SIM_BATCH_SIZE"]["value"] == "1000000"  # not 1e+06
    settings = settings_of(env, monkeypatch)
    for key, field in FIELDS.items():
        assert getattr(settings, field) == simulator[key], key
    assert str(settings.sim_csv) == "/data/listings.csv"


def _bounds(field: str) -> dict[str, float]:
    found = {}
    for item in Settings.model_fields[field].metadata:
        for kind in ("ge", "le", "gt", "lt"):
            if isinstance(item, getattr(annotated_types, kind.capitalize())):
                found[kind] = getattr(item, kind)
    return found


def test_schema_ranges_mirror_the_settings() -> None:
    schema = json.loads((CHARTS_DIR / CHART / "values.schema.json").read_text())
    properties = schema["properties"]["simulator"]["properties"]
    for key, field in FIELDS.items():
        bounds = _bounds(field)
        declared = properties[key]
        assert declared.get("minimum") == bounds.get("ge"), key
        assert declared.get("maximum") == bounds.get("le"), key
        assert "gt" not in bounds
        assert "lt" not in bounds


@pytest.mark.parametrize(
    ("simulator", "message"),
    [
        ({"batches": 0}, r"/simulator/batches.*minimum"),
        ({"batches": 10001}, r"/simulator/batches.*maximum"),
        ({"batchSize": 1000001}, r"/simulator/batchSize.*maximum"),
        ({"driftAt": 0}, r"/simulator/driftAt.*minimum"),
        ({"driftStrength": 6}, r"/simulator/driftStrength.*maximum"),
        ({"dirtyRate": 1.5}, r"/simulator/dirtyRate.*maximum"),
        ({"dirtyRate": "3%"}, r"/simulator/dirtyRate.*got string, want number"),
        ({"seed": "42"}, r"/simulator/seed.*got string, want integer"),
        ({"batchsize": 10}, "additional properties 'batchsize' not allowed"),
        ({"csvPath": "data.csv"}, r"/simulator/csvPath"),
    ],
)
def test_schema_rejects_out_of_range_typos_and_bad_types(simulator: dict, message: str) -> None:
    with pytest.raises(HelmError, match=message):
        objects({"simulator": simulator})


def test_csv_source_mounts_a_volume() -> None:
    values = {
        "simulator": {"csvPath": "/data/realtor.csv"},
        "extraVolumes": [{"name": "data", "configMap": {"name": "realtor"}}],
        "extraVolumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
    }
    c = container(values)
    assert env_of(c)["MLOPS_SIM_CSV"]["value"] == "/data/realtor.csv"
    assert {"name": "data", "mountPath": "/data", "readOnly": True} in c["volumeMounts"]
    volumes = pod_spec(deployment(values))["volumes"]
    assert {"name": "data", "configMap": {"name": "realtor"}} in volumes


def test_no_credentials_and_read_only_root() -> None:
    c = container()
    assert all("valueFrom" not in item for item in c["env"])
    assert "envFrom" not in c
    assert by_kind(objects(), "Secret") == []
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in pod_spec(deployment())["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


# --- helm test (templates/tests/test-connection.yaml) --------------------------------------------

# The umbrella's case: release `mlops` and the Service named by fullnameOverride, here with another
# name and port, to show that the test pod follows the chart's own helpers and values.
RENAMED = {"fullnameOverride": "simulator", "service": {"port": 8080}}
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
    """The simulator's pod, which the Service fronts."""
    return one(objects, "Deployment")


@pytest.mark.parametrize(
    ("values", "release"), [({}, CHART), (RENAMED, "mlops")], ids=["guide", "umbrella"]
)
def test_helm_test_gets_healthz_through_the_service_port(
    values: dict[str, Any], release: str
) -> None:
    """GET of the Service's name and port (80, not the pod's 8000) at the probes' path, as
    Airflow's data pipeline calls it; /healthz uses up no batch."""
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
    assert probe["path"] == "/healthz"


def test_helm_test_pod_is_a_hardened_hook_like_the_server() -> None:
    """A `helm test` hook (kept when it fails, for `kubectl logs`) on the server's image,
    scheduling and security contexts: read-only root, /tmp writable as HOME, no Secret."""
    objects = render_chart(CHART, SCHEDULING)
    pod, server = one(objects, "Pod", "datasource-test"), server_of(objects)
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
    """Its own rule, on the pod's port 8000 behind the Service's 80, also when no client is
    listed; the selector picks this chart's test pod, not another chart's of the same
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
