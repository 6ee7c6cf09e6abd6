"""grafana chart: provisioned Prometheus datasource and dashboards (no manual import), admin
from the secrets chart."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mlops_platform import checks
from mlops_platform.cli import app
from tests.charts.conftest import (
    CHARTS_DIR,
    HelmError,
    client_rules,
    env_of,
    helm_test_pods,
    helm_test_rule,
    helm_test_rules,
    one,
    pod_spec,
    render_chart,
)


def dashboard() -> dict:
    cm = one(render_chart("grafana"), "ConfigMap", "grafana-dashboards")
    return json.loads(cm["data"]["inference-api.json"])


def exprs(dash: dict) -> list[str]:
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def test_datasource_points_at_the_prometheus_service() -> None:
    cm = one(render_chart("grafana"), "ConfigMap", "grafana-provisioning")
    (source,) = yaml.safe_load(cm["data"]["datasources.yaml"])["datasources"]
    assert source["url"] == "http://prometheus:9090"
    assert source["type"] == "prometheus"
    assert source["isDefault"] is True
    uids = {t["datasource"]["uid"] for p in dashboard()["panels"] for t in p.get("targets", [])}
    assert uids == {source["uid"]}


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
    assert dash["uid"]
    assert dash["title"]
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])


def test_dashboard_job_is_the_prometheus_job() -> None:
    (job,) = [v for v in dashboard()["templating"]["list"] if v["name"] == "job"]
    prom_values = yaml.safe_load((CHARTS_DIR / "prometheus" / "values.yaml").read_text())
    assert job["current"]["value"] == prom_values["scrape"]["fastapi"]["jobName"]


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


# `helm test grafana` (templates/tests/test-connection.yaml).


def check_call(pod: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> tuple[Any, ...]:
    """Run the test pod's command through the real CLI with the check itself replaced: what it
    would be called with (each Secret value stands in as "<secret>/<key>"), so a renamed option
    or environment variable fails here, not in the cluster."""
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(checks, "grafana", lambda *args: calls.append(args) or "ok")
    (container,) = pod["spec"]["containers"]
    command = [*container["command"], *container["args"]]
    assert command[:3] == ["mlops", "check", "grafana"]
    env = {
        name: item.get("value") or "{name}/{key}".format(**item["valueFrom"]["secretKeyRef"])
        for name, item in env_of(container).items()
    }
    result = CliRunner().invoke(app, command[1:], env=env)
    assert result.exit_code == 0, result.output
    (call,) = calls
    return call


def test_helm_test_asks_for_the_provisioned_datasource_as_admin_through_the_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = render_chart("grafana")
    (pod,) = helm_test_pods(objects)
    assert pod["metadata"]["name"] == "grafana-test"
    assert pod["metadata"]["annotations"] == {
        "helm.sh/hook": "test",
        "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
    }
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "test"
    service = one(objects, "Service", "grafana")
    url, user, password, datasource = check_call(pod, monkeypatch)
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
    assert check_call(pod, monkeypatch) == (
        "http://dash-grafana:13000",
        "dash-admin/user",
        "dash-admin/admin-password",
        "Platform metrics",
    )


def test_helm_test_pod_is_hardened_and_placed_like_the_server() -> None:
    placement = {
        "imagePullSecrets": [{"name": "regcred"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
    }
    (pod,) = helm_test_pods(render_chart("grafana", placement))
    spec = pod["spec"]
    assert {key: spec[key] for key in placement} == placement
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = spec["containers"]
    assert container["image"] == "mlops/platform:0.1.0"
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert env_of(container)["HOME"] == {"name": "HOME", "value": "/tmp"}
    (tmp,) = container["volumeMounts"]
    assert tmp["mountPath"] == "/tmp"
    assert {"name": tmp["name"], "emptyDir": {}} in spec["volumes"]
    # The login only through Secret references, never on the command line.
    assert all("value" not in item for name, item in env_of(container).items() if name != "HOME")
    assert "ports" not in container, "the Service (same selector labels) must find no port here"


def test_network_policy_admits_the_helm_test_pod_on_the_server_port() -> None:
    objects = render_chart("grafana")
    (pod,) = helm_test_pods(objects)
    policy = one(objects, "NetworkPolicy", "grafana")
    server = pod_spec(one(objects, "Deployment"))["containers"][0]
    target = one(objects, "Service", "grafana")["spec"]["ports"][0]["targetPort"]
    (pod_port,) = [p["containerPort"] for p in server["ports"] if p["name"] == target]
    assert helm_test_rules(policy) == [helm_test_rule("grafana", [pod_port])]
    peer = helm_test_rules(policy)[0]["from"][0]["podSelector"]["matchLabels"]
    assert peer.items() <= pod["metadata"]["labels"].items()
    # No in-cluster client by default (port-forward): the test pod is the only peer.
    assert client_rules(policy) == []
    assert policy["spec"]["ingress"] == [helm_test_rule("grafana", [pod_port])]
    # The umbrella gives every chart one release name: still only grafana's own test pod.
    umbrella = one(render_chart("grafana", release="mlops"), "NetworkPolicy")
    assert helm_test_rules(umbrella) == [helm_test_rule("grafana", [pod_port], "mlops")]


def test_helm_test_can_be_turned_off() -> None:
    off = {"tests": {"enabled": False}}
    objects = render_chart("grafana", off)
    assert helm_test_pods(objects) == []
    policy = one(objects, "NetworkPolicy", "grafana")
    assert helm_test_rules(policy) == []
    assert policy["spec"]["ingress"] == client_rules(policy)
    alone = render_chart("grafana", {**off, "networkPolicy": {"allowedClients": []}})
    assert one(alone, "NetworkPolicy")["spec"]["ingress"] == []


@pytest.mark.parametrize(
    ("tests", "error"),
    [
        ({"image": {"tag": 1}}, r"/tests/image/tag.*got number, want string"),
        ({"image": {"tag": "latest"}}, r"/tests/image/tag"),
        ({"enabled": "yes"}, r"/tests/enabled.*got string, want boolean"),
        ({"colour": "blue"}, r"/tests.*additional properties 'colour' not allowed"),
    ],
)
def test_schema_rejects_bad_test_values(tests: dict[str, Any], error: str) -> None:
    with pytest.raises(HelmError, match=error):
        render_chart("grafana", {"tests": tests})
