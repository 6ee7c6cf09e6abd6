"""redis chart: Celery broker with its password from the secrets chart, optional volume."""

from __future__ import annotations

import pytest

from tests.charts.conftest import (
    by_kind,
    env_of,
    helm_test_check_call,
    helm_test_pods,
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


# `helm test redis` (templates/tests/test-connection.yaml): its command, run through the CLI.
# The pod, its NetworkPolicy rule and its `tests` values: test_helm_test_pods.py.


def test_helm_test_pings_through_the_service_with_the_server_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = render_chart("redis")
    (pod,) = helm_test_pods(objects)
    service = one(objects, "Service", "redis")
    server = env_of(pod_spec(one(objects, "Deployment", "redis"))["containers"][0])
    password = "{name}/{key}".format(**server["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"])
    host, port, sent = helm_test_check_call(pod, "redis_ping", monkeypatch)
    assert (host, port) == (service["metadata"]["name"], service["spec"]["ports"][0]["port"])
    assert sent == password


def test_helm_test_follows_release_service_and_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "auth": {"existingSecret": "broker-auth", "passwordKey": "pw"},
        "service": {"port": 16379},
    }
    (pod,) = helm_test_pods(render_chart("redis", values, release="broker"))
    assert pod["metadata"]["name"] == "broker-redis-test"
    assert helm_test_check_call(pod, "redis_ping", monkeypatch) == (
        "broker-redis",
        16379,
        "broker-auth/pw",
    )
