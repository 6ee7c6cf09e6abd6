"""The one-machine platform: PostgreSQL, S3, MLflow and the data-source simulator.

State lives under ``settings.state_dir``: each service's data, log and pid file. Starting twice
reuses what is running and restarts what crashed; stopping keeps the data.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import make_url

from mlops_platform.local.mlflow_server import prepare_backend, server_command, server_env
from mlops_platform.local.postgres import LocalPostgres, free_port
from mlops_platform.local.processes import Service, wait_http
from mlops_platform.local.s3 import LocalS3, wait_s3
from mlops_platform.settings import Settings
from mlops_platform.storage.engine import normalise_url
from mlops_platform.storage.migrate import upgrade_all

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    pid: int | None


def on_free_ports(settings: Settings) -> Settings:
    """A copy of ``settings`` whose local services all listen on free ports, URLs to match.

    For a second platform beside the usual one: benchmarks, tests, a demo in a temporary folder.
    """
    pg, s3, mlflow, sim, api = (free_port() for _ in range(5))
    local = "127.0.0.1"

    def database(url: str, port: int) -> str:
        return (
            make_url(normalise_url(url))
            .set(host=local, port=port)
            .render_as_string(hide_password=False)
        )

    return settings.replace(
        pg_port=pg,
        s3_port=s3,
        mlflow_port=mlflow,
        sim_port=sim,
        api_port=api,
        raw_db_url=database(settings.raw_url, pg),
        clean_db_url=database(settings.clean_url, pg),
        mlflow_backend_db_url=database(str(settings.mlflow_backend_db_url), pg),
        s3_endpoint_url=f"http://{local}:{s3}",
        mlflow_tracking_uri=f"http://{local}:{mlflow}",
        datasource_url=f"http://{local}:{sim}",
        api_url=f"http://{local}:{api}",
    )


def local_postgres(settings: Settings) -> LocalPostgres:
    return LocalPostgres(settings.state_dir.resolve() / "postgres" / "data", settings.pg_port)


def local_s3(settings: Settings) -> LocalS3:
    return LocalS3(
        settings.state_dir.resolve() / "s3" / "data",
        settings.s3_port,
        settings.s3_access_key,
        settings.s3_secret_key,
    )


def service(settings: Settings, name: str) -> Service:
    return Service(name, settings.state_dir.resolve())


def _ensure_database(postgres: LocalPostgres, url: str, variable: str) -> None:
    parsed = make_url(normalise_url(url))
    local = parsed.host in ("127.0.0.1", "localhost")
    if not local or parsed.port not in (None, postgres.port):
        raise ValueError(
            f"{variable} points at {parsed.host}:{parsed.port}, not the local PostgreSQL on "
            f"127.0.0.1:{postgres.port}; point it there or change MLOPS_PG_PORT"
        )
    postgres.ensure_database(parsed.database, parsed.username, parsed.password or "")


def ensure_stores(postgres: LocalPostgres, settings: Settings) -> None:
    """Create the RAW, CLEAN and MLflow databases with their owners, then migrate RAW and CLEAN."""
    _ensure_database(postgres, settings.raw_url, "MLOPS_RAW_DB_URL")
    _ensure_database(postgres, settings.clean_url, "MLOPS_CLEAN_DB_URL")
    _ensure_database(postgres, str(settings.mlflow_backend_db_url), "MLOPS_MLFLOW_BACKEND_DB_URL")
    upgrade_all(settings.raw_url, settings.clean_url)


def up(settings: Settings, progress: Progress = lambda _: None) -> list[Endpoint]:
    """Start (or reuse) every service in dependency order and wait until each is healthy."""
    progress("PostgreSQL")
    postgres = local_postgres(settings)
    postgres.init()
    postgres.start()
    ensure_stores(postgres, settings)

    progress("S3 (weed)")
    s3, s3_service = local_s3(settings), service(settings, "s3")
    s3_service.start(s3.command(), s3.env())
    wait_s3(s3.endpoint_url, settings.s3_access_key, settings.s3_secret_key, process=s3_service)
    prepare_backend(settings)

    progress("MLflow")
    mlflow = service(settings, "mlflow")
    mlflow.start(server_command(settings), server_env(settings))
    wait_http(f"{settings.mlflow_tracking_uri}/health", timeout_s=120, process=mlflow)

    progress("data source")
    source = service(settings, "datasource")
    source.start(
        [sys.executable, "-m", "mlops_platform.cli", "datasource", "serve"], settings.to_env()
    )
    wait_http(f"{settings.datasource_url}/healthz", process=source)
    return status(settings)


def status(settings: Settings) -> list[Endpoint]:
    postgres = local_postgres(settings)
    pg_pid = None
    if postgres.is_running():
        pg_pid = int((postgres.data_dir / "postmaster.pid").read_text().split()[0])
    return [
        Endpoint("postgres", f"postgresql://127.0.0.1:{settings.pg_port}", pg_pid),
        Endpoint("s3", settings.s3_endpoint_url, service(settings, "s3").pid()),
        Endpoint("mlflow", settings.mlflow_tracking_uri, service(settings, "mlflow").pid()),
        Endpoint("datasource", settings.datasource_url, service(settings, "datasource").pid()),
    ]


def down(settings: Settings) -> None:
    """Stop in reverse dependency order; data stays in the state folder."""
    for name in ("datasource", "mlflow", "s3"):
        service(settings, name).stop()
    local_postgres(settings).stop()
