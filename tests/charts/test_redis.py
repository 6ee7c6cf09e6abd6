"""redis chart: Celery broker with its password from the secrets chart, optional volume."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from mlops_platform import checks
from mlops_platform.cli import app
from tests.charts.conftest import (
    HelmError,
    by_kind,
    client_rules,
    env_of,
    helm_test_pods,
    helm_test_rule,
    helm_test_rules,
    one,
    pod_spec,
    render_chart,
)


def test_password_comes_from_the_secret_and_stays_off_the_command_line() -> None:
    objects = render_chart("redis")
    container = pod_spec(one(objects, "Deployment", "redis"))["containers"][0]
    env = env_of(container)
    for name in ("REDIS_PASSWORD", "REDISCLI_AUTH"):
        assert env[name]["valueFrom"]["secretKeyRef"] == {
            "name": "redis-credentials",
            "key": "redis-password",
        }
    command = " ".join(container["command"] + container["args"])
    assert "requirepass" in command
    assert "--requirepass" not in command
    assert "requirepass" not in one(objects, "ConfigMap")["data"]["redis.conf"]


def test_probes_ping_with_the_password() -> None:
    container = pod_spec(one(render_chart("redis"), "Deployment"))["containers"][0]
    for probe in ("livenessProbe", "readinessProbe"):
        assert "redis-cli -h 127.0.0.1 -p 6379 ping" in " ".join(
            container[probe]["exec"]["command"]
        )


def test_volume_is_optional() -> None:
    with_volume = render_chart("redis")
    claim = one(with_volume, "PersistentVolumeClaim", "redis-data")
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    deployment = one(with_volume, "Deployment")
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    without = render_chart("redis", {"persistence": {"enabled": False}})
    assert by_kind(without, "PersistentVolumeClaim") == []
    volumes = {v["name"]: v for v in pod_spec(one(without, "Deployment"))["volumes"]}
    assert "emptyDir" in volumes["data"]


# `helm test redis` (templates/tests/test-connection.yaml).


def check_call(pod: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> tuple[Any, ...]:
    """Run the test pod's command through the real CLI with the check itself replaced: what it
    would be called with (each Secret value stands in as "<secret>/<key>"), so a renamed option
    or environment variable fails here, not in the cluster."""
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(checks, "redis_ping", lambda *args: calls.append(args) or "ok")
    (container,) = pod["spec"]["containers"]
    command = [*container["command"], *container["args"]]
    assert command[:3] == ["mlops", "check", "redis"]
    env = {
        name: item.get("value") or "{name}/{key}".format(**item["valueFrom"]["secretKeyRef"])
        for name, item in env_of(container).items()
    }
    result = CliRunner().invoke(app, command[1:], env=env)
    assert result.exit_code == 0, result.output
    (call,) = calls
    return call


def test_helm_test_pings_through_the_service_with_the_server_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = render_chart("redis")
    (pod,) = helm_test_pods(objects)
    assert pod["metadata"]["name"] == "redis-test"
    assert pod["metadata"]["annotations"] == {
        "helm.sh/hook": "test",
        "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
    }
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "test"
    service = one(objects, "Service", "redis")
    server = env_of(pod_spec(one(objects, "Deployment", "redis"))["containers"][0])
    password = "{name}/{key}".format(**server["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"])
    host, port, sent = check_call(pod, monkeypatch)
    assert (host, port) == (service["metadata"]["name"], service["spec"]["ports"][0]["port"])
    assert sent == password


def test_helm_test_follows_release_service_and_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "auth": {"existingSecret": "broker-auth", "passwordKey": "pw"},
        "service": {"port": 16379},
    }
    (pod,) = helm_test_pods(render_chart("redis", values, release="broker"))
    assert pod["metadata"]["name"] == "broker-redis-test"
    assert check_call(pod, monkeypatch) == ("broker-redis", 16379, "broker-auth/pw")


def test_helm_test_pod_is_hardened_and_placed_like_the_server() -> None:
    placement = {
        "imagePullSecrets": [{"name": "regcred"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
    }
    (pod,) = helm_test_pods(render_chart("redis", placement))
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
    # The password only through a Secret reference, never on the command line.
    assert all("value" not in item for name, item in env_of(container).items() if name != "HOME")
    assert "ports" not in container, "the Service (same selector labels) must find no port here"


def test_network_policy_admits_the_helm_test_pod_on_the_server_port() -> None:
    objects = render_chart("redis")
    (pod,) = helm_test_pods(objects)
    policy = one(objects, "NetworkPolicy", "redis")
    server = pod_spec(one(objects, "Deployment"))["containers"][0]
    target = one(objects, "Service", "redis")["spec"]["ports"][0]["targetPort"]
    (pod_port,) = [p["containerPort"] for p in server["ports"] if p["name"] == target]
    assert helm_test_rules(policy) == [helm_test_rule("redis", [pod_port])]
    peer = helm_test_rules(policy)[0]["from"][0]["podSelector"]["matchLabels"]
    assert peer.items() <= pod["metadata"]["labels"].items()
    assert [peer for r in client_rules(policy) for peer in r["from"]] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "airflow"}}}
    ]
    # No client at all: the test pod is the only peer; in the umbrella, only redis' own.
    alone = one(render_chart("redis", {"networkPolicy": {"allowedClients": []}}), "NetworkPolicy")
    assert alone["spec"]["ingress"] == [helm_test_rule("redis", [pod_port])]
    umbrella = one(render_chart("redis", release="mlops"), "NetworkPolicy")
    assert helm_test_rules(umbrella) == [helm_test_rule("redis", [pod_port], "mlops")]


def test_helm_test_can_be_turned_off() -> None:
    off = {"tests": {"enabled": False}}
    objects = render_chart("redis", off)
    assert helm_test_pods(objects) == []
    policy = one(objects, "NetworkPolicy", "redis")
    assert helm_test_rules(policy) == []
    assert policy["spec"]["ingress"] == client_rules(policy)
    alone = render_chart("redis", {**off, "networkPolicy": {"allowedClients": []}})
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
        render_chart("redis", {"tests": tests})
