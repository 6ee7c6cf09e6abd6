"""``run(settings)``: the API under uvicorn, with ``settings.api_workers`` processes.

Workers are separate processes that build their own app from the environment, so ``run`` first
writes every setting into ``MLOPS_*`` variables: each worker then sees exactly these settings.
With more than one worker, Prometheus metrics go through a shared multiprocess folder.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from mlops_platform.serving.metrics import MULTIPROC_ENV
from mlops_platform.settings import Settings, load_settings

APP_FACTORY = "mlops_platform.serving.server:app_from_env"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# MLflow's client retries a failed request 7 times with exponential backoff: against a stopped
# server ~4 min (246 s measured). The API asks MLflow for the alias inside the hook's request, so
# the pipeline's notify (30 s timeout) would time out, blaming the API, instead of hearing that
# MLflow is unreachable; the alias poll comes back every model_poll_interval_s anyway. The API's
# process retries twice, quickly, unless its environment says otherwise.
MLFLOW_CLIENT_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}


def app_from_env() -> FastAPI:
    """The uvicorn factory each worker calls (imported here: the supervisor never needs it)."""
    from mlops_platform.serving.app import create_app

    # A spawned worker starts with no logging set up; a no-op where the CLI already did it.
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    for name, value in MLFLOW_CLIENT_ENV.items():
        os.environ.setdefault(name, value)
    return create_app(load_settings())


def _multiprocess_dir(workers: int) -> None:
    """A fresh metrics folder for this server's workers (old files would add stale counts)."""
    if workers == 1:
        os.environ.pop(MULTIPROC_ENV, None)
        return
    folder = Path(os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="mlops-api-metrics-"))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):  # the folder may be a mounted volume: empty it, keep it
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(folder)


def run(settings: Settings) -> None:
    """Serve on ``api_host:api_port`` until interrupted."""
    os.environ.update(settings.to_env())
    _multiprocess_dir(settings.api_workers)
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        workers=settings.api_workers,
        access_log=False,  # every request is counted in /metrics; a log line each costs more
        log_level="info",
    )
