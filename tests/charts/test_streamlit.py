"""streamlit chart: `mlops serve ui` from the app image on streamlit:8501, probes on Streamlit's
own health endpoint, a read-only database user for both stores, the API and MLflow as values,
writable HOME for ~/.streamlit, the `helm test` pod (its NetworkPolicy, which admits nobody
in-cluster by default but that pod: test_network_policies.py)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.charts.conftest import (
    CHARTS_DIR,
    REPO,
    HelmError,
    by_kind,
    env_of,
    helm,
    helm_test_command,
    one,
    pod_labels,
    pod_spec,
    readme_secret_keys,
    render_chart,
    settings_of,
    workloads,
)

CHART = "streamlit"
SECRET = "streamlit-credentials"


def objects(values: dict | None = None) -> list[dict[str, Any]]:
    return render_chart(CHART, values)


def deployment(values: dict | None = None) -> dict[str, Any]:
    return one(objects(values), "Deployment", CHART)


def container(values: dict | None = None) -> dict[str, Any]:
    return pod_spec(deployment(values))["containers"][0]


def test_service_and_container_port() -> None:
    service = one(objects(), "Service", "streamlit")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8501, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"].items() <= pod_labels(deployment()).items()
    assert container()["ports"] == [{"name": "http", "containerPort": 8501, "protocol": "TCP"}]


def test_runs_mlops_serve_ui() -> None:
    c = container()
    assert c["command"] == ["mlops"]
    assert c["args"] == ["serve", "ui", "--host", "0.0.0.0", "--port", "8501"]
    assert c["image"] == "mlops/platform:0.1.0"


def test_probes_use_streamlit_health() -> None:
    c = container()
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/_stcore/health", "port": "http"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_probe_path_answers_on_a_real_streamlit(tmp_path: Path) -> None:
    """`mlops serve ui` with the chart's environment, then the probes' GET, as the kubelet does."""
    c = container()
    env = {k: v["value"] for k, v in env_of(c).items() if "value" in v}
    env["MLOPS_RAW_DB_URL"] = env["MLOPS_CLEAN_DB_URL"] = "postgresql+psycopg://u:p@127.0.0.1/x"
    env.update(HOME=str(tmp_path), TMPDIR=str(tmp_path), PATH=os.environ["PATH"])
    args = c["args"][:]
    port = _free_port()
    args[args.index("--host") + 1] = "127.0.0.1"
    args[args.index("--port") + 1] = str(port)
    path = c["readinessProbe"]["httpGet"]["path"]
    process = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "mlops"), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code
            except httpx.TransportError:
                status = None
            if status == 200:
                break
            time.sleep(0.5)
        assert status == 200, f"GET {path} never answered 200"
    finally:
        process.terminate()
        try:
            output, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    assert "Traceback" not in output, output


def test_environment_is_settings_the_package_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    env = env_of(container())
    settings = settings_of(env, monkeypatch)
    assert settings.api_url == "http://fastapi:8989"
    assert settings.mlflow_tracking_uri == "http://mlflow:5000"
    assert settings.model_name == "house_price"
    for url, database in ((settings.raw_db_url, "/rawdata"), (settings.clean_db_url, "/cleandata")):
        assert url.hosts()[0]["host"] == "postgres"
        assert url.hosts()[0]["port"] == 5432
        assert url.path == database
        # One read-only user for both stores.
        assert url.hosts()[0]["username"] == "secret-db-user"
    assert env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"]["value"] == "false"
    assert env["STREAMLIT_SERVER_HEADLESS"]["value"] == "true"


def test_values_reach_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "apiUrl": "http://api.serving:8989",
        "mlflow": {"trackingUri": "http://registry:5000"},
        "database": {"host": "pg.example.org", "rawName": "mlops", "cleanName": "mlops"},
    }
    settings = settings_of(env_of(container(values)), monkeypatch)
    assert settings.api_url == "http://api.serving:8989"
    assert settings.mlflow_tracking_uri == "http://registry:5000"
    assert settings.raw_url == settings.clean_url
    assert settings.raw_db_url.hosts()[0]["host"] == "pg.example.org"


def test_read_only_credentials_from_the_contract_secret() -> None:
    env = env_of(container())
    refs = {
        name: item["valueFrom"]["secretKeyRef"] for name, item in env.items() if "valueFrom" in item
    }
    assert refs == {
        "DB_USER": {"name": SECRET, "key": "db-username"},
        "DB_PASSWORD": {"name": SECRET, "key": "db-password"},
    }
    names = list(env)
    for variable, database in (
        ("MLOPS_RAW_DB_URL", "rawdata"),
        ("MLOPS_CLEAN_DB_URL", "cleandata"),
    ):
        url = env[variable]["value"]
        assert url == f"postgresql+psycopg://$(DB_USER):$(DB_PASSWORD)@postgres:5432/{database}"
        for var in re.findall(r"\$\((\w+)\)", url):
            assert names.index(var) < names.index(variable)
    for name, item in env.items():
        if re.search(r"PASSWORD|TOKEN|SECRET", name):
            assert "value" not in item, f"{name} must come from a Secret"
    assert "MLOPS_API_TOKEN" not in env  # the UI never calls the hook
    contract = readme_secret_keys()
    produced = {
        s["metadata"]["name"]: set(s["data"]) for s in by_kind(render_chart("secrets"), "Secret")
    }
    for ref in refs.values():
        assert ref["key"] in contract[ref["name"]], f"{ref} is not in charts/README.md"
        assert ref["key"] in produced[ref["name"]], f"{ref} is not made by the secrets chart"


def test_the_secret_user_is_the_read_only_role() -> None:
    """The secrets chart puts the postgres chart's `reader` role (SELECT only) in this Secret."""
    import base64

    secret = one(render_chart("secrets"), "Secret", SECRET)
    postgres = one(render_chart("secrets"), "Secret", "postgres-credentials")
    user = base64.b64decode(secret["data"]["db-username"]).decode()
    assert user == base64.b64decode(postgres["data"]["reader-username"]).decode()
    owners = {
        base64.b64decode(postgres["data"][f"{db}-username"]).decode()
        for db in ("rawdata", "cleandata")
    }
    assert user not in owners


def test_read_only_root_with_writable_tmp_and_home() -> None:
    c = container()
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in pod_spec(deployment())["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    home = env_of(c)["HOME"]["value"]
    for path in ("/tmp", home):
        assert path in mounts, f"{path} must be writable"
        assert "emptyDir" in volumes[mounts[path]]


def test_ingress_is_optional() -> None:
    assert by_kind(objects(), "Ingress") == []
    ingress = one(objects({"ingress": {"enabled": True, "className": "nginx"}}), "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["rules"][0]["host"] == "streamlit.local"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "streamlit", "port": {"name": "http"}}
    assert "tls" not in ingress["spec"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"apiURL": "http://fastapi:8989"}, "additional properties 'apiURL' not allowed"),
        ({"database": {"clean": "cleandata"}}, "additional properties 'clean' not allowed"),
        ({"replicaCount": "1"}, r"/replicaCount.*got string, want integer"),
        ({"apiUrl": "fastapi:8989"}, r"/apiUrl"),
        ({"ingress": {"enabled": "true"}}, r"/ingress/enabled.*got string, want boolean"),
        ({"networkPolicy": {"extraFrom": {"podSelector": {}}}}, r"got object, want array"),
    ],
)
def test_schema_rejects_typos_and_bad_types(values: dict, message: str) -> None:
    with pytest.raises(HelmError, match=message):
        objects(values)


# --- helm test (templates/tests/test-connection.yaml) --------------------------------------------
# The command the pod runs. The pod itself, its NetworkPolicy rule, its `tests` values and that the
# URL is the Service's name and port (also in the umbrella's case): test_helm_test_pods.py.


def test_helm_test_gets_streamlit_health_through_the_service() -> None:
    """GET of the Service's name and port at the probes' path (/_stcore/health), as a
    browser's port-forward or an ingress reaches the UI."""
    command = helm_test_command(render_chart(CHART))
    assert command == ["mlops", "check", "http", "http://streamlit:8501/_stcore/health"]


# --- the ML loop's metrics exporter (templates/exporter-*.yaml) ----------------------------------
# A second server of the chart: `mlops serve exporter` on streamlit-exporter:9188, the same image,
# read-only user and security contexts as the UI; the prometheus chart scrapes it (scrape.loop).

EXPORTER = "streamlit-exporter"


def exporter_deployment(values: dict | None = None) -> dict[str, Any]:
    return one(objects(values), "Deployment", EXPORTER)


def exporter_container(values: dict | None = None) -> dict[str, Any]:
    (c,) = pod_spec(exporter_deployment(values))["containers"]
    return c


def test_exporter_runs_mlops_serve_exporter_from_the_platform_image() -> None:
    c = exporter_container()
    assert c["command"] == ["mlops"]
    assert c["args"] == ["serve", "exporter", "--host", "0.0.0.0", "--port", "9188"]
    assert (c["image"], c["imagePullPolicy"]) == ("mlops/platform:0.1.0", "IfNotPresent")
    assert c["ports"] == [{"name": "metrics", "containerPort": 9188, "protocol": "TCP"}]
    assert exporter_deployment()["spec"]["replicas"] == 1


def test_each_service_selects_its_own_server_only() -> None:
    """The exporter's pods are app.kubernetes.io/name streamlit-exporter: the UI's Service and
    Deployment (selectors unchanged, below) never take them, and the exporter's never take the
    UI's."""
    rendered = objects()
    ui, exporter = one(rendered, "Service", CHART), one(rendered, "Service", EXPORTER)
    assert exporter["spec"]["ports"] == [
        {"name": "metrics", "port": 9188, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert exporter["spec"]["type"] == "ClusterIP"
    for service, server, other in (
        (ui, deployment(), exporter_deployment()),
        (exporter, exporter_deployment(), deployment()),
    ):
        selector = service["spec"]["selector"].items()
        assert selector <= pod_labels(server).items()
        assert not selector <= pod_labels(other).items(), service["metadata"]["name"]
        assert server["spec"]["selector"]["matchLabels"].items() <= pod_labels(server).items()
        assert not server["spec"]["selector"]["matchLabels"].items() <= pod_labels(other).items()
    assert pod_labels(exporter_deployment())["app.kubernetes.io/name"] == EXPORTER
    assert pod_labels(deployment())["app.kubernetes.io/name"] == CHART


# The UI's selector as released before the exporter (main at 681e0bb): a Deployment's selector is
# immutable, so `helm upgrade` of an existing release fails if it changes. Release -> labels.
RELEASED_UI_SELECTOR = {
    "streamlit": {"app.kubernetes.io/name": "streamlit", "app.kubernetes.io/instance": "streamlit"},
    "ml": {"app.kubernetes.io/name": "streamlit", "app.kubernetes.io/instance": "ml"},
}


@pytest.mark.parametrize("release", sorted(RELEASED_UI_SELECTOR))
def test_ui_selectors_are_the_released_ones(release: str) -> None:
    rendered = render_chart(CHART, release=release)
    (ui,) = [d for d in by_kind(rendered, "Deployment") if "exporter" not in d["metadata"]["name"]]
    assert ui["spec"]["selector"] == {"matchLabels": RELEASED_UI_SELECTOR[release]}
    (service,) = [
        s for s in by_kind(rendered, "Service") if "exporter" not in s["metadata"]["name"]
    ]
    assert service["spec"]["selector"] == RELEASED_UI_SELECTOR[release]


def test_umbrella_ui_selectors_are_the_released_ones() -> None:
    rendered = render_chart("mlops")
    released = {"app.kubernetes.io/name": "streamlit", "app.kubernetes.io/instance": "mlops"}
    assert one(rendered, "Deployment", CHART)["spec"]["selector"] == {"matchLabels": released}
    assert one(rendered, "Service", CHART)["spec"]["selector"] == released


@pytest.mark.parametrize("umbrella", [False, True], ids=["chart", "umbrella"])
def test_no_selector_takes_another_deployments_pods(umbrella: bool) -> None:
    """Each Service and Deployment of the chart selects the pods of one Deployment, its own —
    also in the umbrella, where every chart shares the release name."""
    rendered = render_chart("mlops") if umbrella else objects()
    ours = [
        o
        for o in rendered
        if o["kind"] in {"Deployment", "Service"} and o["metadata"]["labels"]["app"] == CHART
    ]
    deployments = [o for o in ours if o["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {CHART, EXPORTER}
    own = {CHART: CHART, EXPORTER: EXPORTER}
    for obj in ours:
        selector = obj["spec"]["selector"]
        selector = (
            selector.get("matchLabels", selector) if obj["kind"] == "Deployment" else selector
        )
        taken = [
            w["metadata"]["name"]
            for w in workloads(rendered)
            if selector.items() <= pod_labels(w).items()
        ]
        assert taken == [own[obj["metadata"]["name"]]], f"{obj['kind']}/{obj['metadata']['name']}"


def test_exporter_probes_get_metrics() -> None:
    c = exporter_container()
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    # Both stores unreachable: two libpq connect timeouts, within the liveness probe's timeout.
    timeout = int(env_of(c)["PGCONNECT_TIMEOUT"]["value"])
    assert 2 * timeout < c["livenessProbe"]["timeoutSeconds"]
    assert 2 * timeout < c["readinessProbe"]["timeoutSeconds"]


def test_exporter_reads_the_stores_as_the_read_only_user(monkeypatch: pytest.MonkeyPatch) -> None:
    env = env_of(exporter_container())
    ui_env = env_of(container())
    for name in ("DB_USER", "DB_PASSWORD", "MLOPS_RAW_DB_URL", "MLOPS_CLEAN_DB_URL"):
        assert env[name] == ui_env[name], name
    settings = settings_of(env, monkeypatch)
    assert settings.exporter_cache_s == 10
    assert settings.raw_db_url.path == "/rawdata"
    assert settings.clean_db_url.path == "/cleandata"
    assert settings.raw_db_url.hosts()[0]["username"] == "secret-db-user"
    for name, item in env.items():
        if re.search(r"PASSWORD|TOKEN|SECRET", name):
            assert "value" not in item, f"{name} must come from a Secret"
    assert "MLOPS_API_TOKEN" not in env


def test_exporter_values_reach_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "exporter": {
            "port": 9300,
            "cacheSeconds": 30,
            "extraEnv": [{"name": "MLOPS_LOG_LEVEL", "value": "DEBUG"}],
        },
        "database": {"host": "pg.example.org"},
    }
    c = exporter_container(values)
    assert c["args"][-2:] == ["--port", "9300"]
    assert c["ports"][0]["containerPort"] == 9300
    env = env_of(c)
    assert env["MLOPS_LOG_LEVEL"]["value"] == "DEBUG"
    settings = settings_of(env, monkeypatch)
    assert settings.exporter_cache_s == 30
    assert settings.raw_db_url.hosts()[0]["host"] == "pg.example.org"
    service = one(objects(values), "Service", EXPORTER)
    assert service["spec"]["ports"][0]["port"] == 9300


def test_exporter_is_hardened_like_the_ui() -> None:
    exporter, ui = pod_spec(exporter_deployment()), pod_spec(deployment())
    assert exporter["securityContext"] == ui["securityContext"]
    assert exporter["securityContext"]["runAsUser"] == 10001
    assert exporter["automountServiceAccountToken"] is False
    assert exporter["enableServiceLinks"] is False
    c = exporter_container()
    assert c["securityContext"] == container()["securityContext"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in exporter["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert env_of(c)["TMPDIR"]["value"] == "/tmp"
    resources = c["resources"]
    assert resources["requests"] == {"cpu": "50m", "memory": "128Mi"}
    assert resources["limits"]["memory"] == "256Mi"


def _scrape_rules(values: dict | None = None) -> list[dict[str, Any]]:
    """The rules of all the chart's policies that admit anyone on 9188."""
    policies = by_kind(objects(values), "NetworkPolicy")
    return [
        r
        for p in policies
        for r in p["spec"]["ingress"]
        if {port["port"] for port in r["ports"]} == {9188}
    ]


PROMETHEUS = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}


def test_network_policy_admits_prometheus_on_the_exporter_port_only() -> None:
    """The exporter's own policy selects its pods only and admits Prometheus on 9188; the UI's
    policy is as before the exporter and admits Prometheus nowhere."""
    rendered = objects()
    exporter = one(rendered, "NetworkPolicy", EXPORTER)
    assert (
        exporter["spec"]["podSelector"]["matchLabels"]
        == (exporter_deployment()["spec"]["selector"]["matchLabels"])
    )
    rule = {"from": [PROMETHEUS], "ports": [{"port": 9188, "protocol": "TCP"}]}
    assert exporter["spec"]["ingress"] == [rule]
    assert _scrape_rules() == [rule]
    ui = one(rendered, "NetworkPolicy", CHART)
    assert (
        ui["spec"]["podSelector"]["matchLabels"] == deployment()["spec"]["selector"]["matchLabels"]
    )
    assert not ui["spec"]["podSelector"]["matchLabels"].items() <= (
        pod_labels(exporter_deployment()).items()
    )
    assert all(PROMETHEUS not in r["from"] for r in ui["spec"]["ingress"])
    ui_clients = {"networkPolicy": {"allowedClients": ["ingress"]}}
    ui_rule, _test = one(objects(ui_clients), "NetworkPolicy", CHART)["spec"]["ingress"]
    assert ui_rule["ports"] == [{"port": 8501, "protocol": "TCP"}]
    assert one(objects(ui_clients), "NetworkPolicy", EXPORTER)["spec"]["ingress"] == [rule]


def test_network_policy_exporter_rule_follows_its_values() -> None:
    moved = {
        "exporter": {
            "port": 9300,
            "networkPolicy": {"extraFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
        }
    }
    policy = one(objects(moved), "NetworkPolicy", EXPORTER)
    assert policy["spec"]["ingress"] == [
        {
            "from": [PROMETHEUS, {"ipBlock": {"cidr": "10.0.0.0/8"}}],
            "ports": [{"port": 9300, "protocol": "TCP"}],
        }
    ]
    nobody = {"exporter": {"networkPolicy": {"allowedClients": []}}}
    assert one(objects(nobody), "NetworkPolicy", EXPORTER)["spec"]["ingress"] == []
    off = {"networkPolicy": {"enabled": False}}
    assert by_kind(objects(off), "NetworkPolicy") == []


def test_exporter_can_be_turned_off() -> None:
    off = objects({"exporter": {"enabled": False}})
    names = {(o["kind"], o["metadata"]["name"]) for o in off}
    assert ("Deployment", EXPORTER) not in names
    assert ("Service", EXPORTER) not in names
    assert _scrape_rules({"exporter": {"enabled": False}}) == []
    assert ("NetworkPolicy", EXPORTER) not in names
    assert ("Deployment", CHART) in names


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"exporter": {"colour": "blue"}}, "additional properties 'colour' not allowed"),
        ({"exporter": {"port": "9188"}}, r"/exporter/port.*got string, want integer"),
        ({"exporter": {"port": 80}}, r"/exporter/port"),
        ({"exporter": {"cacheSeconds": -1}}, r"/exporter/cacheSeconds"),
        ({"exporter": {"resources": {"limits": None}}}, r"/exporter/resources.*limits"),
        (
            {"exporter": {"networkPolicy": {"allowedClients": ["Prom etheus"]}}},
            r"/exporter/networkPolicy/allowedClients/0",
        ),
        ({"exporter": {"livenessProbe": {"periodSecond": 5}}}, "'periodSecond' not allowed"),
    ],
)
def test_schema_rejects_bad_exporter_values(values: dict, message: str) -> None:
    with pytest.raises(HelmError, match=message):
        objects(values)


def test_notes_say_where_the_loop_metrics_are() -> None:
    def notes(*args: str) -> str:
        out = helm(
            "install", CHART, str(CHARTS_DIR / CHART), "-n", "mlops", "--dry-run=client", *args
        )
        return out.split("NOTES:", 1)[1]

    text = notes()
    assert "http://streamlit-exporter:9188/metrics" in text
    assert "kubectl port-forward svc/streamlit-exporter 9188:9188 -n mlops" in text
    assert "pods named prometheus reach the exporter's port 9188 only" in text
    assert "streamlit-exporter" not in notes("--set", "exporter.enabled=false")
