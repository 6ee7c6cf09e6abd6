"""Secrets of the local platform, generated once per state folder and read back after: Airflow's
Fernet key, API and JWT secrets and admin password, the inference API's hook token (shared by
the API and the production DAG that calls it), the PostgreSQL passwords (the superuser's and one
per database user) and the S3 keys. Nothing local has a default password: as on the cluster,
where the secrets chart makes them."""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Callable

from sqlalchemy.engine import make_url

from mlops_platform.settings import Settings
from mlops_platform.storage.engine import normalise_url

HOOK_TOKEN_VARIABLE = "MLOPS_API_TOKEN"

_MAKERS: dict[str, Callable[[], str]] = {
    "fernet_key": lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    "api_secret_key": lambda: secrets.token_urlsafe(32),
    "jwt_secret": lambda: secrets.token_urlsafe(32),
    "admin_password": lambda: secrets.token_urlsafe(12),
    "api_token": lambda: secrets.token_urlsafe(24),
    "postgres_password": lambda: secrets.token_urlsafe(18),
    "rawdata_db_password": lambda: secrets.token_urlsafe(18),
    "cleandata_db_password": lambda: secrets.token_urlsafe(18),
    "mlflow_db_password": lambda: secrets.token_urlsafe(18),
    "airflow_db_password": lambda: secrets.token_urlsafe(18),
    "s3_access_key": lambda: "mlops-" + secrets.token_hex(6),
    "s3_secret_key": lambda: secrets.token_urlsafe(30),
}
# The database URL settings the local PostgreSQL serves, and the key of each one's password.
DB_PASSWORDS = {
    "raw_db_url": "rawdata_db_password",
    "clean_db_url": "cleandata_db_password",
    "mlflow_backend_db_url": "mlflow_db_password",
    "airflow_db_url": "airflow_db_password",
}


def keys(settings: Settings) -> dict[str, str]:
    """Made on first use (owner-only file in the state folder), then read back unchanged; a
    file from an earlier version gets the keys it lacks."""
    path = settings.state_dir.resolve() / "keys.json"
    known = json.loads(path.read_text()) if path.is_file() else {}
    missing = {name: make() for name, make in _MAKERS.items() if name not in known}
    if not missing:
        return known
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(known | missing, indent=2))
    return known | missing


def _with_password(url: str, password: str, pg_port: int) -> str:
    """``url`` with ``password`` when it names the local server and has none of its own."""
    parsed = make_url(normalise_url(url))
    local = parsed.host in ("127.0.0.1", "localhost") and parsed.port in (None, pg_port)
    if not local or parsed.password:
        return url
    return parsed.set(password=password).render_as_string(hide_password=False)


def with_local_secrets(settings: Settings) -> Settings:
    """The generated secrets filled in where the user gave none: the hook token (unless
    MLOPS_API_TOKEN is set), the password of each database URL on the local server, the S3 keys."""
    secret = keys(settings)
    changes: dict[str, object] = {
        field: _with_password(str(getattr(settings, field)), secret[key], settings.pg_port)
        for field, key in DB_PASSWORDS.items()
    }
    if HOOK_TOKEN_VARIABLE not in os.environ:
        changes["api_token"] = secret["api_token"]
    if not settings.s3_access_key:
        changes["s3_access_key"] = secret["s3_access_key"]
    if not settings.s3_secret_key:
        changes["s3_secret_key"] = secret["s3_secret_key"]
    return settings.replace(**changes)
