"""The one-machine platform: a local PostgreSQL and the data-source simulator.

State lives under ``settings.state_dir``. Starting twice reuses what is running.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from sqlalchemy.engine import make_url

from mlops_platform.local.postgres import LocalPostgres
from mlops_platform.local.processes import Service, wait_http
from mlops_platform.settings import Settings
from mlops_platform.storage.engine import normalise_url
from mlops_platform.storage.migrate import upgrade_all


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    pid: int | None


def local_postgres(settings: Settings) -> LocalPostgres:
    return LocalPostgres(settings.state_dir.resolve() / "postgres" / "data", settings.pg_port)


def datasource_service(settings: Settings) -> Service:
    return Service("datasource", settings.state_dir.resolve())


def ensure_stores(postgres: LocalPostgres, settings: Settings) -> None:
    """Create the RAW and CLEAN databases and owners named in the settings, then migrate them."""
    for url in (settings.raw_url, settings.clean_url):
        parsed = make_url(normalise_url(url))
        local = parsed.host in ("127.0.0.1", "localhost")
        if not local or parsed.port not in (None, postgres.port):
            raise ValueError(
                f"{parsed.render_as_string()} is not the local PostgreSQL on port {postgres.port};"
                " set MLOPS_RAW_DB_URL/MLOPS_CLEAN_DB_URL to 127.0.0.1:MLOPS_PG_PORT"
            )
        postgres.ensure_database(parsed.database, parsed.username, parsed.password or "")
    upgrade_all(settings.raw_url, settings.clean_url)


def up(settings: Settings) -> list[Endpoint]:
    postgres = local_postgres(settings)
    postgres.init()
    postgres.start()
    ensure_stores(postgres, settings)
    source = datasource_service(settings)
    source.start([sys.executable, "-m", "mlops_platform.cli", "datasource", "serve"])
    wait_http(f"{settings.datasource_url}/healthz", process=source)
    return status(settings)


def status(settings: Settings) -> list[Endpoint]:
    postgres = local_postgres(settings)
    pg_pid = None
    if postgres.is_running():
        pg_pid = int((postgres.data_dir / "postmaster.pid").read_text().split()[0])
    return [
        Endpoint("postgres", f"postgresql://127.0.0.1:{settings.pg_port}", pg_pid),
        Endpoint("datasource", settings.datasource_url, datasource_service(settings).pid()),
    ]


def down(settings: Settings) -> None:
    datasource_service(settings).stop()
    local_postgres(settings).stop()
