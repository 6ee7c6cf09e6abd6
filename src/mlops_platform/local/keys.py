"""Secrets of the local platform, generated once per state folder and read back after: Airflow's
Fernet key, API and JWT secrets and admin password, and the inference API's hook token (shared
by the API and the production DAG that calls it)."""

from __future__ import annotations

import base64
import json
import os
import secrets

from mlops_platform.settings import Settings

HOOK_TOKEN_VARIABLE = "MLOPS_API_TOKEN"


def _made() -> dict[str, str]:
    return {
        "fernet_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "api_secret_key": secrets.token_urlsafe(32),
        "jwt_secret": secrets.token_urlsafe(32),
        "admin_password": secrets.token_urlsafe(12),
        "api_token": secrets.token_urlsafe(24),
    }


def keys(settings: Settings) -> dict[str, str]:
    """Made on first use (owner-only file in the state folder), then read back unchanged."""
    path = settings.state_dir.resolve() / "keys.json"
    if path.is_file():
        return json.loads(path.read_text())
    made = _made()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(made, indent=2))
    return made


def with_hook_token(settings: Settings) -> Settings:
    """The generated hook token, unless MLOPS_API_TOKEN was set (then the user's is kept)."""
    if HOOK_TOKEN_VARIABLE in os.environ:
        return settings
    return settings.replace(api_token=keys(settings)["api_token"])
