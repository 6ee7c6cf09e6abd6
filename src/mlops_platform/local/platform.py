"""The one-machine platform behind `mlops up`: the same code, DAGs and database engine as on
Kubernetes, as plain processes.

PostgreSQL (RAW, CLEAN, MLflow and Airflow databases, each with its own owner), an S3 API, the
MLflow server, the data-source simulator, the inference API, the UI, the loop metrics exporter,
Prometheus (when its binary is installed) and Airflow's four servers.
State lives under ``settings.state_dir``: each service's data, log and pid file. Starting twice
reuses what runs and restarts what crashed; stopping keeps the data unless purged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from mlops_platform.local import airflow
from mlops_platform.local import prometheus as local_prometheus
from mlops_platform.local.keys import keys, with_local_secrets
from mlops_platform.local.mlflow_server import prepare_backend, server_command, server_env
from mlops_platform.local.postgres import LocalPostgres, free_ports, port_is_free
from mlops_platform.local.processes import Service, StartError, answers, wait_until
from mlops_platform.local.s3 import LocalS3, wait_s3
from mlops_platform.settings import Settings
from mlops_platform.storage.engine import normalise_url
from mlops_platform.storage.migrate import upgrade_all

AIRFLOW = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
CORE = ("postgres", "s3", "mlflow", "datasource")
DEMO = (*CORE, "api")
MONITORING = ("exporter", "prometheus")
ALL = (*CORE, "api", "ui", *MONITORING, *AIRFLOW)

# progress(service, state, detail): state is starting, healthy, reused, skipped or failed.
MARKER = ".mlops-state"
Progress = Callable[[str, str, str], None]


class PlatformError(RuntimeError):
    """A service could not start; the message says which, why, and what to do."""


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    pid: int | None
    port: int
    port_variable: str


def endpoints(settings: Settings) -> dict[str, Endpoint]:
    """Every service with the URL a person opens and the variable that moves its port."""
    air = airflow.base_url(settings)

    def at(name: str, url: str, port: int, variable: str) -> Endpoint:
        return Endpoint(name, url, None, port, variable)

    listed = [
        at("postgres", f"postgresql://127.0.0.1:{settings.pg_port}", settings.pg_port, "PG_PORT"),
        at("s3", settings.s3_endpoint_url, settings.s3_port, "S3_PORT"),
        at("mlflow", settings.mlflow_tracking_uri, settings.mlflow_port, "MLFLOW_PORT"),
        at("datasource", settings.datasource_url, settings.sim_port, "SIM_PORT"),
        at("api", f"{settings.api_url}/docs", settings.api_port, "API_PORT"),
        at("ui", f"http://127.0.0.1:{settings.ui_port}", settings.ui_port, "UI_PORT"),
        at(
            "exporter",
            f"http://127.0.0.1:{settings.exporter_port}/metrics",
            settings.exporter_port,
            "EXPORTER_PORT",
        ),
        at(
            "prometheus",
            local_prometheus.url(settings)
            if local_prometheus.binary()
            else f"({local_prometheus.MISSING})",
            settings.prometheus_port,
            "PROMETHEUS_PORT",
        ),
        at("airflow-api-server", air, settings.airflow_port, "AIRFLOW_PORT"),
        at(
            "airflow-scheduler",
            "(LocalExecutor; task logs)",
            settings.airflow_worker_log_port,
            "AIRFLOW_WORKER_LOG_PORT",
        ),
        at("airflow-dag-processor", f"{settings.dags_dir}", 0, ""),
        at(
            "airflow-triggerer",
            "(deferred tasks)",
            settings.airflow_triggerer_log_port,
            "AIRFLOW_TRIGGERER_LOG_PORT",
        ),
    ]
    return {e.name: e for e in listed}


def on_free_ports(settings: Settings) -> Settings:
    """A copy of ``settings`` whose local services all listen on free ports, URLs to match.

    For a second platform beside the usual one: benchmarks, tests, a demo in a temporary folder.
    Its secrets are generated into its own state folder, as `mlops up` does.
    """
    pg, s3, mlflow, sim, api, ui, air, worker_log, trigger_log, exporter, prom = free_ports(11)
    local = "127.0.0.1"

    def database(url: str) -> str:
        return make_url(normalise_url(url)).set(host=local, port=pg).render_as_string(False)

    return with_local_secrets(
        settings.replace(
            pg_port=pg,
            s3_port=s3,
            mlflow_port=mlflow,
            sim_port=sim,
            api_port=api,
            ui_port=ui,
            exporter_port=exporter,
            prometheus_port=prom,
            airflow_port=air,
            airflow_worker_log_port=worker_log,
            airflow_triggerer_log_port=trigger_log,
            raw_db_url=database(settings.raw_url),
            clean_db_url=database(settings.clean_url),
            mlflow_backend_db_url=database(str(settings.mlflow_backend_db_url)),
            airflow_db_url=database(str(settings.airflow_db_url)),
            s3_endpoint_url=f"http://{local}:{s3}",
            mlflow_tracking_uri=f"http://{local}:{mlflow}",
            datasource_url=f"http://{local}:{sim}",
            api_url=f"http://{local}:{api}",
        )
    )


def local_postgres(settings: Settings) -> LocalPostgres:
    return LocalPostgres(
        settings.state_dir.resolve() / "postgres" / "data",
        settings.pg_port,
        password=keys(settings)["postgres_password"],
    )


def local_s3(settings: Settings) -> LocalS3:
    return LocalS3(
        settings.state_dir.resolve() / "s3" / "data",
        settings.s3_port,
        settings.s3_access_key,
        settings.s3_secret_key,
    )


def service(settings: Settings, name: str) -> Service:
    return Service(name, settings.state_dir.resolve())


def log_file(settings: Settings, name: str) -> Path:
    """Where a service writes its output (`mlops logs NAME`)."""
    if name == "postgres":
        return local_postgres(settings).log_file
    return service(settings, name).log_file


def _ensure_database(postgres: LocalPostgres, url: str, variable: str) -> None:
    parsed = make_url(normalise_url(url))
    local = parsed.host in ("127.0.0.1", "localhost")
    if not local or parsed.port not in (None, postgres.port):
        raise PlatformError(
            f"{variable} points at {parsed.host}:{parsed.port}, not the local PostgreSQL on "
            f"127.0.0.1:{postgres.port}; point it there or change MLOPS_PG_PORT"
        )
    postgres.ensure_database(parsed.database, parsed.username, parsed.password or "")


def ensure_stores(postgres: LocalPostgres, settings: Settings) -> None:
    """RAW, CLEAN, MLflow and Airflow databases, each owned by its own user; RAW and CLEAN
    migrated (Airflow migrates its own when it starts)."""
    _ensure_database(postgres, settings.raw_url, "MLOPS_RAW_DB_URL")
    _ensure_database(postgres, settings.clean_url, "MLOPS_CLEAN_DB_URL")
    _ensure_database(postgres, str(settings.mlflow_backend_db_url), "MLOPS_MLFLOW_BACKEND_DB_URL")
    _ensure_database(postgres, str(settings.airflow_db_url), "MLOPS_AIRFLOW_DB_URL")
    upgrade_all(settings.raw_url, settings.clean_url)


def pid_of(settings: Settings, name: str) -> int | None:
    if name == "postgres":
        postgres = local_postgres(settings)
        if not postgres.is_running():
            return None
        try:
            pid = int((postgres.data_dir / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None
        return pid if pid > 0 else None  # negative: a single-user backend (initdb), not a server
    return service(settings, name).pid()


def available(name: str) -> bool:
    """False for an optional service whose program is not installed (Prometheus)."""
    return name != "prometheus" or local_prometheus.binary() is not None


def preflight(settings: Settings, names: Sequence[str]) -> None:
    """What would make starting ``names`` fail half-way, said before anything starts: a port
    another program holds, a DAGs folder that is not there."""
    if set(names) & set(AIRFLOW) and not settings.dags_dir.is_dir():
        raise PlatformError(
            f"the DAGs folder {settings.dags_dir.resolve()} does not exist: run `mlops up` from "
            "the repository root, or set MLOPS_DAGS_DIR to the folder of the DAGs"
        )
    taken = []
    known = endpoints(settings)
    for name in filter(available, names):
        endpoint = known[name]
        if endpoint.port and pid_of(settings, name) is None and not port_is_free(endpoint.port):
            taken.append(
                f"port {endpoint.port} ({name}) is in use by another program: stop it, or "
                f"choose another with MLOPS_{endpoint.port_variable}=<port>"
            )
    if taken:
        raise PlatformError("\n".join(taken))


# Services start tier by tier: everything in a tier is launched at once, then each is waited
# for. A tier needs only the tiers before it (MLflow needs PostgreSQL and S3; the API, MLflow;
# Prometheus, the API and the exporter it scrapes, so its first scrape finds them up).
TIERS = (
    ("postgres",),
    ("s3",),
    ("mlflow", "datasource"),
    ("api", "ui", "exporter"),
    ("prometheus",),
    AIRFLOW,
)
AIRFLOW_COMPONENT = {
    "airflow-api-server": "metadatabase",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag_processor",
    "airflow-triggerer": "triggerer",
}


def _mlops(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlops_platform.cli", *args]


def _migrate_airflow(settings: Settings) -> None:
    log = service(settings, "airflow-migrate").log_file
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        done = subprocess.run(
            airflow.migrate_command(),
            env={**os.environ, **airflow.environment(settings)},
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
            timeout=600,
        )
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-1500:]
        raise PlatformError(f"`airflow db migrate` failed; the end of {log}:\n{tail}")


def _launch(settings: Settings, name: str) -> None:
    """Start ``name`` without waiting for it (PostgreSQL is synchronous: it is quick)."""
    if name == "postgres":
        postgres = local_postgres(settings)
        postgres.init()
        postgres.start()
        ensure_stores(postgres, settings)
        return
    if name == "s3":
        s3 = local_s3(settings)
        service(settings, name).start(s3.command(), s3.env())
    elif name == "mlflow":
        service(settings, name).start(server_command(settings), server_env(settings))
    elif name == "prometheus":
        _launch_prometheus(settings)
    elif name in AIRFLOW:
        if name == "airflow-api-server" and pid_of(settings, name) is None:
            _migrate_airflow(settings)  # before any Airflow server reads the schema
        service(settings, name).start(
            airflow.commands(settings)[name], airflow.environment(settings)
        )
    else:
        command = {
            "datasource": _mlops("datasource", "serve"),
            "api": _mlops("serve", "api"),
            "ui": _mlops("serve", "ui"),
            "exporter": _mlops("serve", "exporter"),
        }[name]
        service(settings, name).start(command, settings.to_env())


def _launch_prometheus(settings: Settings) -> None:
    """Write its config and rules, then start it; a running one re-reads them (SIGHUP)."""
    executable = local_prometheus.binary()
    if executable is None:
        return
    local_prometheus.write_config(settings)
    running = pid_of(settings, "prometheus")
    if running is not None:
        local_prometheus.reload(running)
        return
    service(settings, "prometheus").start(local_prometheus.command(settings, executable))


def _await(settings: Settings, name: str, timeout_s: float | None = None) -> None:
    """Wait until ``name`` is healthy; fail early with its log if it exits."""
    process = service(settings, name)
    if name == "postgres":
        return
    if name == "s3":
        s3 = local_s3(settings)
        wait_s3(s3.endpoint_url, settings.s3_access_key, settings.s3_secret_key, process=process)
        prepare_backend(settings)
        return
    if name in AIRFLOW:
        component = AIRFLOW_COMPONENT[name]

        def healthy() -> bool:
            return airflow.health(settings).get(component) == "healthy"

        wait_until(name, healthy, timeout_s or 180, process)
        if name == "airflow-dag-processor":
            wait_until(
                f"the DAGs of {settings.dags_dir}",
                lambda: airflow.dags_loaded(settings),
                timeout_s or 120,
                process,
            )
        return
    health = {
        "mlflow": f"{settings.mlflow_tracking_uri}/health",
        "datasource": f"{settings.datasource_url}/healthz",
        "api": f"{settings.api_url}/healthz",
        "ui": f"http://127.0.0.1:{settings.ui_port}/_stcore/health",
        "exporter": f"http://127.0.0.1:{settings.exporter_port}/metrics",
        "prometheus": local_prometheus.ready_url(settings),
    }[name]
    wait_until(name, lambda: answers(health), timeout_s or 120, process)


# How long a process found running may take to be healthy before it is started afresh: a live
# Airflow server heartbeats every few seconds once its database is back.
REUSED_GRACE_S = 45.0


def _await_reused(settings: Settings, name: str, reused: bool, progress: Progress) -> bool:
    """Await ``name``; a reused process that exits or stays unhealthy is started afresh, once.

    A process found running may be on its way out. After PostgreSQL is killed, Airflow's
    dag-processor, scheduler and triggerer exit 3-15 s later even when it is back by then, and a
    scheduler can instead hang for good in its executor's shutdown, alive without a heartbeat.
    Neither is a start failing. False when it was restarted.
    """
    if not reused:
        _await(settings, name)
        return True
    try:
        _await(settings, name, REUSED_GRACE_S)
        return True
    except StartError:
        why = "exited" if pid_of(settings, name) is None else "was not healthy"
    progress(name, "starting", f"the running process {why}; starting it again")
    service(settings, name).stop()
    _launch(settings, name)
    _await(settings, name)
    return False


def up(
    settings: Settings,
    progress: Progress = lambda *_: None,
    services: Sequence[str] = ALL,
) -> list[Endpoint]:
    """Start (or reuse) ``services`` tier by tier and wait until each is healthy."""
    unknown = set(services) - set(ALL)
    if unknown:
        raise PlatformError(f"unknown services {sorted(unknown)}; known: {', '.join(ALL)}")
    names = [name for name in ALL if name in services]
    preflight(settings, names)
    mark_state(settings.state_dir)
    for tier in TIERS:
        members = [name for name in tier if name in names]
        for name in [name for name in members if not available(name)]:
            progress(name, "skipped", local_prometheus.MISSING)
            members.remove(name)
        running = {name: pid_of(settings, name) is not None for name in members}
        started = time.monotonic()
        current = ""
        try:
            for current in members:
                progress(current, "starting", "")
                _launch(settings, current)
            for current in members:
                if not _await_reused(settings, current, running[current], progress):
                    running[current] = False
                took = f"{time.monotonic() - started:.1f} s"
                progress(current, "reused" if running[current] else "healthy", took)
        except Exception as error:
            progress(current, "failed", str(error).splitlines()[0])
            raise
    return status(settings, names)


def status(settings: Settings, names: Sequence[str] = ALL) -> list[Endpoint]:
    known = endpoints(settings)
    return [
        Endpoint(e.name, e.url, pid_of(settings, e.name), e.port, e.port_variable)
        for e in (known[name] for name in names)
    ]


def down(settings: Settings, purge: bool = False) -> list[str]:
    """Stop in reverse dependency order; the data stays unless ``purge``. Returns what stopped."""
    stopped = []
    for name in reversed(ALL):
        if name == "postgres":
            postgres = local_postgres(settings)
            if postgres.is_running():
                postgres.stop()
                stopped.append(name)
        elif service(settings, name).stop(timeout_s=30):
            stopped.append(name)
    if purge:
        purge_state(settings.state_dir)
    return stopped


def mark_state(state_dir: Path) -> None:
    """Mark the folder as ours, so `down --purge` can tell it from any other folder."""
    state_dir.mkdir(parents=True, exist_ok=True)
    marker = state_dir / MARKER
    if not marker.exists():
        marker.write_text(
            "State folder of the local MLOps platform (`mlops up`). "
            "`mlops down --purge` deletes this whole folder.\n"
        )


def purge_state(state_dir: Path) -> None:
    """Delete the state folder — only one that `mlops up` marked (never any other folder)."""
    folder = state_dir.resolve()
    if not folder.exists():
        return
    if not (folder / MARKER).is_file():
        raise PlatformError(
            f"{folder} has no {MARKER} file, so it is not a state folder `mlops up` made; "
            "not deleting it"
        )
    shutil.rmtree(folder)
