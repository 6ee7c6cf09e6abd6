"""The MLflow tracking server: metadata in PostgreSQL, artifacts in S3, served through the server.

Clients never hold S3 credentials: with ``--serve-artifacts`` they upload and download through the
server (``mlflow-artifacts:/``), and only the server talks to S3. The same flags run locally
(``mlops up``, tests) and in the Helm chart. MLflow is not imported here: it takes ~2 s to import,
and the server runs in its own process anyway.
"""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import urlparse

from mlops_platform.local.s3 import ensure_bucket
from mlops_platform.settings import Settings
from mlops_platform.storage.engine import normalise_url

# The Kubernetes Service name of the tracking server (see DESIGN.md, "Contracts").
SERVICE_NAME = "mlflow"
# MLflow 3's own default Host allow-list (loopback and private networks): passing
# --allowed-hosts replaces it, so it is repeated here next to the names we add.
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "[::1]", "0.0.0.0")
PRIVATE_NETWORKS = ("10.*", "192.168.*", *(f"172.{n}.*" for n in range(16, 32)))


class MlflowServerError(RuntimeError):
    """The MLflow backend could not be prepared; the message says why and what to do."""


def backend_uri(settings: Settings) -> str:
    """The metadata store URL with the psycopg 3 driver named (the only one we ship)."""
    return normalise_url(str(settings.mlflow_backend_db_url))


def artifacts_bucket(settings: Settings) -> str:
    """The bucket of ``mlflow_artifacts_uri`` (``s3://bucket/prefix``)."""
    parsed = urlparse(settings.mlflow_artifacts_uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise MlflowServerError(
            f"MLOPS_MLFLOW_ARTIFACTS_URI must look like s3://bucket/prefix, "
            f"got {settings.mlflow_artifacts_uri!r}"
        )
    return parsed.netloc


def allowed_hosts(settings: Settings) -> list[str]:
    """Host headers the server accepts (MLflow 3 refuses others: DNS-rebinding protection).

    Besides MLflow's defaults: the host of the tracking URI and the in-cluster names of the
    ``mlflow`` Service (``mlflow:5000``, ``mlflow.mlops.svc.cluster.local:5000``, ...).
    """
    names = [*DEFAULT_HOSTS, SERVICE_NAME]
    for host in (urlparse(settings.mlflow_tracking_uri).hostname, settings.mlflow_host):
        if host and host not in names and host not in ("0.0.0.0", "::"):
            names.append(host)
    # fnmatch reads "[" as a character class: "[::1]:*" must be written "[[]::1]:*".
    with_ports = [p for name in names for p in (name, f"{name.replace('[', '[[]', 1)}:*")]
    return [*with_ports, f"{SERVICE_NAME}.*", *PRIVATE_NETWORKS]


def server_command(settings: Settings) -> list[str]:
    """``mlflow server`` with PostgreSQL metadata and proxied S3 artifacts."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend_uri(settings),
        "--serve-artifacts",
        "--artifacts-destination",
        settings.mlflow_artifacts_uri,
        "--host",
        settings.mlflow_host,
        "--port",
        str(settings.mlflow_port),
        "--workers",
        str(settings.mlflow_workers),
        "--allowed-hosts",
        ",".join(allowed_hosts(settings)),
    ]


def server_env(settings: Settings) -> dict[str, str]:
    """Environment of the server process: S3 credentials (only the server has them)."""
    return {
        "AWS_ACCESS_KEY_ID": settings.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": settings.s3_secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "MLFLOW_S3_ENDPOINT_URL": settings.s3_endpoint_url,
        # MinIO-compatible servers behind one Service name: no bucket-per-hostname DNS.
        "MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE": "path",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # The job runner serves GenAI scorers and prompt optimisation, which we do not use; it
        # starts 7 huey consumer processes (~1.2 GB together) next to the one server worker.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }


def prepare_backend(settings: Settings) -> None:
    """Create the artifacts bucket (idempotent); the server creates its tables itself."""
    ensure_bucket(
        settings.s3_endpoint_url,
        settings.s3_access_key,
        settings.s3_secret_key,
        artifacts_bucket(settings),
    )


def upgrade_backend(settings: Settings, timeout_s: float = 300.0) -> None:
    """``mlflow db upgrade``: bring the metadata schema to this MLflow's version (idempotent).

    The Helm chart runs this as an init step so a new MLflow image migrates an old database
    before any server worker starts.
    """
    result = subprocess.run(
        [sys.executable, "-m", "mlflow", "db", "upgrade", backend_uri(settings)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        check=False,
    )
    if result.returncode != 0:
        raise MlflowServerError(
            "`mlflow db upgrade` failed; check MLOPS_MLFLOW_BACKEND_DB_URL and that the "
            f"database exists:\n{result.stderr[-2000:]}"
        )
