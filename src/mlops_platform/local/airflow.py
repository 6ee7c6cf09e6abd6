"""Airflow 3 on one machine: api-server, scheduler, dag-processor and triggerer with the
LocalExecutor, metadata in the local PostgreSQL, the repository's ``dags/``.

Everything is configured by ``AIRFLOW__*`` variables (no airflow.cfg to keep in sync) under
``<state>/airflow``. Keys and the admin password are generated once (``local.keys``) and kept,
so a restart keeps sessions, encrypted connections and the login. Login is Airflow 3's
SimpleAuthManager with a passwords file we write (Airflow would otherwise generate one and print
it in a log).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import httpx

from mlops_platform.local.keys import keys
from mlops_platform.settings import Settings

HEALTH_PATH = "/api/v2/monitor/health"
SIMPLE_AUTH_MANAGER = (
    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
)


def home(settings: Settings) -> Path:
    return settings.state_dir.resolve() / "airflow"


def airflow_binary() -> str:
    """The ``airflow`` next to this interpreter (the `airflow` extra), else on PATH."""
    beside = Path(sys.executable).with_name("airflow")
    found = str(beside) if beside.is_file() else shutil.which("airflow")
    if not found:
        raise FileNotFoundError(
            "the `airflow` command is not installed: pip install -e '.[airflow]' (make install)"
        )
    return found


def passwords_file(settings: Settings) -> Path:
    """SimpleAuthManager's ``{user: password}`` file, written from ``keys``."""
    path = home(settings) / "passwords.json"
    wanted = {settings.airflow_admin_user: keys(settings)["admin_password"]}
    if not path.is_file() or json.loads(path.read_text()) != wanted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(wanted))
    return path


def base_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.airflow_port}"


def environment(settings: Settings) -> dict[str, str]:
    """What every Airflow process (and every task it runs) gets: Airflow's configuration and the
    platform's ``MLOPS_*`` settings, which the DAG tasks read."""
    secret = keys(settings)
    folder = home(settings)
    return settings.to_env() | {
        "AIRFLOW_HOME": str(folder),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": str(settings.airflow_db_url),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(settings.airflow_parallelism),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.dags_dir.resolve()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__FERNET_KEY": secret["fernet_key"],
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{settings.airflow_admin_user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file(settings)),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url(settings)}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__BASE_URL": base_url(settings),
        "AIRFLOW__API__SECRET_KEY": secret["api_secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": secret["jwt_secret"],
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(folder / "logs"),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(settings.airflow_worker_log_port),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(settings.airflow_triggerer_log_port),
        # The DAGs' files are read at this pace; an edit shows in Airflow within a few seconds.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
    }


def commands(settings: Settings) -> dict[str, list[str]]:
    """One command per server, named as `mlops status` shows them (``airflow-<component>``)."""
    airflow = airflow_binary()
    return {
        "airflow-api-server": [
            airflow,
            "api-server",
            "--host",
            "127.0.0.1",
            "--port",
            str(settings.airflow_port),
        ],
        # No log servers: Airflow's serve-logs binds every interface (host="" in Airflow 3.3,
        # no setting moves it), and here tasks write their logs to the folder the api-server
        # reads them from, so nothing needs serving.
        "airflow-scheduler": [airflow, "scheduler", "--skip-serve-logs"],
        "airflow-dag-processor": [airflow, "dag-processor"],
        "airflow-triggerer": [airflow, "triggerer", "--skip-serve-logs"],
    }


def migrate_command() -> list[str]:
    return [airflow_binary(), "db", "migrate"]


def health(settings: Settings, timeout_s: float = 10.0) -> dict[str, str]:
    """Component -> status from the api-server's health endpoint (empty when it is down).

    Patient on purpose: right after start, with the first DAG runs being scheduled on a busy
    2-core machine, the api-server has taken more than 3 s to answer (a false "down")."""
    try:
        body = httpx.get(f"{base_url(settings)}{HEALTH_PATH}", timeout=timeout_s).json()
    except (httpx.HTTPError, ValueError):
        return {}
    return {name: str(part.get("status")) for name, part in body.items() if isinstance(part, dict)}


def token(settings: Settings, timeout_s: float = 10.0) -> str:
    """A bearer token for Airflow's REST API, from the admin login."""
    response = httpx.post(
        f"{base_url(settings)}/auth/token",
        json={
            "username": settings.airflow_admin_user,
            "password": keys(settings)["admin_password"],
        },
        timeout=timeout_s,
    )
    response.raise_for_status()
    return response.json()["access_token"]


def _get(settings: Settings, path: str) -> dict:
    response = httpx.get(
        f"{base_url(settings)}/api/v2/{path}",
        headers={"Authorization": f"Bearer {token(settings)}"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def dags(settings: Settings) -> dict[str, bool]:
    """DAG id -> paused, as Airflow's REST API lists them."""
    return {dag["dag_id"]: bool(dag["is_paused"]) for dag in _get(settings, "dags")["dags"]}


def dag_files(settings: Settings) -> list[Path]:
    """The DAG files of ``dags_dir`` (one DAG each in this project)."""
    return sorted(p for p in settings.dags_dir.glob("*.py") if not p.name.startswith("_"))


def dags_loaded(settings: Settings) -> bool:
    """Every DAG file is parsed: listed as a DAG or reported as an import error. Until then
    Airflow is healthy but shows fewer DAGs than the folder holds."""
    try:
        errors = _get(settings, "importErrors")["total_entries"]
        return len(dags(settings)) + errors >= len(dag_files(settings))
    except (httpx.HTTPError, KeyError, ValueError):
        return False
