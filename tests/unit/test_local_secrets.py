"""The local platform's secrets: generated once per state folder, never a default, and filled in
only where the user gave none."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from mlops_platform.local.keys import DB_PASSWORDS, keys, with_local_secrets
from mlops_platform.settings import Settings, load_settings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in ("RAW_DB_URL", "CLEAN_DB_URL", "API_TOKEN", "S3_ACCESS_KEY", "S3_SECRET_KEY"):
        monkeypatch.delenv(f"MLOPS_{name}", raising=False)
    return load_settings(state_dir=tmp_path / "state")


def test_the_defaults_hold_no_password(settings: Settings) -> None:
    for field in DB_PASSWORDS:
        assert make_url(str(getattr(settings, field))).password is None, field
    assert settings.s3_access_key == settings.s3_secret_key == ""


def test_local_urls_get_generated_passwords_once(settings: Settings) -> None:
    filled = with_local_secrets(settings)
    secret = keys(settings)
    for field, key in DB_PASSWORDS.items():
        url = make_url(str(getattr(filled, field)))
        assert url.password == secret[key], field
        assert len(secret[key]) >= 20
    assert (filled.s3_access_key, filled.s3_secret_key) == (
        secret["s3_access_key"],
        secret["s3_secret_key"],
    )
    assert filled.api_token == secret["api_token"]
    assert with_local_secrets(settings) == filled, "read back, not made again"
    path = settings.state_dir.resolve() / "keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(set(secret.values())) == len(secret), "every secret its own"


def test_what_the_user_gave_is_kept(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_API_TOKEN", "my-own-token")
    given = settings.replace(
        raw_db_url="postgresql+psycopg://rawdata:chosen@127.0.0.1:5432/rawdata",
        clean_db_url="postgresql+psycopg://cleandata@db.example.org:5432/cleandata",
        s3_access_key="AK",
        s3_secret_key="SK",
        api_token="my-own-token",
    )
    filled = with_local_secrets(given)
    assert make_url(filled.raw_url).password == "chosen"
    assert make_url(filled.clean_url).password is None, "not the local server: not ours to fill"
    assert (filled.s3_access_key, filled.s3_secret_key, filled.api_token) == (
        "AK",
        "SK",
        "my-own-token",
    )


def test_an_earlier_keys_file_gets_what_it_lacks(settings: Settings) -> None:
    path = settings.state_dir.resolve() / "keys.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"admin_password": "kept"}))
    secret = keys(settings)
    assert secret["admin_password"] == "kept"
    assert {"postgres_password", "s3_secret_key"} <= secret.keys()
    assert json.loads(path.read_text()) == secret
