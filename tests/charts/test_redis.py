"""redis chart: Celery broker with its password from the secrets chart, optional volume."""

from __future__ import annotations

import pytest

from tests.charts.conftest import HelmError, by_kind, env_of, one, pod_spec, render_chart


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


PORTS = [{"port": 6379, "protocol": "TCP"}]


def peer(name: str) -> dict:
    return {"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}}


def test_network_policy_admits_airflow_on_the_service_ports() -> None:
    """Only airflow may connect, on the pod port the Service targets."""
    policy = one(render_chart("redis"), "NetworkPolicy", "redis")
    assert policy["spec"]["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/name": "redis", "app.kubernetes.io/instance": "redis"}
    }
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == [{"from": [peer("airflow")], "ports": PORTS}]
    # The pod's ports behind the Service's (a policy matches pod ports), whatever service.port is.
    objects = render_chart(
        "redis", {"service": {"port": 18080}, "networkPolicy": {"allowedClients": ["ui"]}}
    )
    (rule,) = one(objects, "NetworkPolicy")["spec"]["ingress"]
    assert rule["ports"] == PORTS
    container = pod_spec(one(objects, "Deployment", "redis"))["containers"][0]
    pod_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    service = one(objects, "Service", "redis")
    assert [p["port"] for p in PORTS] == [
        pod_ports[p["targetPort"]] for p in service["spec"]["ports"]
    ]


def test_network_policy_can_be_turned_off_narrowed_or_widened() -> None:
    assert (
        by_kind(render_chart("redis", {"networkPolicy": {"enabled": False}}), "NetworkPolicy") == []
    )
    closed = render_chart("redis", {"networkPolicy": {"allowedClients": []}})
    assert one(closed, "NetworkPolicy")["spec"]["ingress"] == []
    ingress = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
    }
    widened = render_chart(
        "redis", {"networkPolicy": {"allowedClients": ["ui"], "extraFrom": [ingress]}}
    )
    assert one(widened, "NetworkPolicy")["spec"]["ingress"] == [
        {"from": [peer("ui"), ingress], "ports": PORTS}
    ]
    only_extra = render_chart(
        "redis", {"networkPolicy": {"allowedClients": [], "extraFrom": [ingress]}}
    )
    assert one(only_extra, "NetworkPolicy")["spec"]["ingress"] == [
        {"from": [ingress], "ports": PORTS}
    ]
    with pytest.raises(HelmError, match="/networkPolicy/allowedClients/0"):
        render_chart("redis", {"networkPolicy": {"allowedClients": ["Not A Label"]}})
