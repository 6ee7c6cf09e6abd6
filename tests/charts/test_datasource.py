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
    env_of,
    helm_test_command,
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
# The command the pod runs. The pod itself, its NetworkPolicy rule, its `tests` values and that the
# URL is the Service's name and port (also in the umbrella's case): test_helm_test_pods.py.


def test_helm_test_gets_healthz_through_the_service_port() -> None:
    """GET of the Service's name and port (80, not the pod's 8000) at the probes' path, as
    Airflow's data pipeline calls it; /healthz uses up no batch."""
    command = helm_test_command(render_chart(CHART))
    assert command == ["mlops", "check", "http", "http://datasource:80/healthz"]
