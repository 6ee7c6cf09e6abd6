"""redis chart: Celery broker with its password from the secrets chart, optional volume."""

from __future__ import annotations

from tests.charts.conftest import by_kind, env_of, one, pod_spec, render_chart


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
