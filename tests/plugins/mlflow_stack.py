"""Session fixtures for the real MLflow stack: a ``weed`` S3 server and an ``mlflow server``.

Both are the same commands ``mlops up`` runs (``LocalS3.command``, ``server_command``), started
once per session on free ports in temporary folders. Each is stopped in a ``finally`` around its
start, so a failing test, a failed start or Ctrl-C never leaves one running.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mlops_platform.local.mlflow_server import prepare_backend, server_command, server_env
from mlops_platform.local.postgres import LocalPostgres, free_port
from mlops_platform.local.processes import Service
from mlops_platform.local.s3 import LocalS3, ensure_bucket, wait_s3
from mlops_platform.settings import Settings, load_settings

BUCKET = "mlflow"
ACCESS_KEY = "mlops-test"
SECRET_KEY = "mlops-test-secret"
MLFLOW_DB = "mlflow"  # database, owner and password
START_TIMEOUT_S = 120.0
_model_names = itertools.count()


@dataclass(frozen=True)
class S3Server:
    """Where the session's S3 API listens and the one identity it accepts."""

    endpoint_url: str
    access_key: str
    secret_key: str
    port: int
    bucket: str
    service: Service


@dataclass(frozen=True)
class MlflowServer:
    """The session's tracking server and the settings it was started with."""

    tracking_uri: str
    settings: Settings
    service: Service


def _wait_ready(service: Service, ready: Callable[[], bool], what: str) -> None:
    """Poll ``ready`` until true; fail at once, with the log's tail, if the process exits."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready():
            return
        if service.pid() is None:
            tail = service.log_file.read_text(errors="replace")[-3000:]
            pytest.fail(f"{what} exited while starting; {service.log_file} ends:\n{tail}")
        time.sleep(0.2)
    pytest.fail(f"{what} did not become ready within {START_TIMEOUT_S:.0f}s ({service.log_file})")


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 API (``weed mini``) with bucket ``mlflow``; stopped at session end."""
    root = tmp_path_factory.mktemp("s3")
    local = LocalS3(root / "data", free_port(), ACCESS_KEY, SECRET_KEY)
    service = Service("s3", root)
    try:  # stops the server even when starting it fails half-way
        service.start(local.command(), local.env())
        wait_s3(local.endpoint_url, ACCESS_KEY, SECRET_KEY, START_TIMEOUT_S, process=service)
        ensure_bucket(local.endpoint_url, ACCESS_KEY, SECRET_KEY, BUCKET)
        yield S3Server(local.endpoint_url, ACCESS_KEY, SECRET_KEY, local.port, BUCKET, service)
    finally:
        service.stop()


def stack_settings(postgres: LocalPostgres, s3: S3Server, port: int, state_dir: Path) -> Settings:
    """Settings pointing at the test PostgreSQL, S3 and MLflow port (one worker: less memory)."""
    return load_settings(
        mlflow_tracking_uri=f"http://127.0.0.1:{port}",
        mlflow_backend_db_url=postgres.url(MLFLOW_DB, MLFLOW_DB, MLFLOW_DB),
        mlflow_artifacts_uri=f"s3://{s3.bucket}/artifacts",
        mlflow_host="127.0.0.1",
        mlflow_port=port,
        mlflow_workers=1,
        s3_endpoint_url=s3.endpoint_url,
        s3_access_key=s3.access_key,
        s3_secret_key=s3.secret_key,
        s3_port=s3.port,
        state_dir=state_dir,
    )


@pytest.fixture(scope="session")
def mlflow_server(
    postgres: LocalPostgres,
    s3: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[MlflowServer]:
    """A real ``mlflow server``: metadata in database ``mlflow``, artifacts in S3."""
    root = tmp_path_factory.mktemp("mlflow")
    postgres.ensure_database(MLFLOW_DB, MLFLOW_DB, MLFLOW_DB)
    settings = stack_settings(postgres, s3, free_port(), root)
    prepare_backend(settings)
    service = Service("mlflow", root)
    uri = settings.mlflow_tracking_uri
    try:  # stops the server even when starting it fails half-way
        service.start(server_command(settings), server_env(settings))
        _wait_ready(service, lambda: _healthy(f"{uri}/health"), "mlflow server")
        yield MlflowServer(uri, settings, service)
    finally:
        service.stop()


@pytest.fixture
def mlflow_settings(mlflow_server: MlflowServer) -> Settings:
    """The server's settings with a model and experiment name of this test's own.

    The registry outlives a test (one server per session), so each test gets fresh names:
    "version 1", "no production model yet" and promotions then hold whatever ran before.
    """
    suffix = next(_model_names)
    base = mlflow_server.settings
    return base.model_copy(
        update={
            "model_name": f"{base.model_name}_t{suffix}",
            "experiment_name": f"{base.experiment_name}_t{suffix}",
        }
    )
