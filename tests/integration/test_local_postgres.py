"""The local PostgreSQL server as `mlops up` and the tests run it: from a private checkout, with
no folder's permissions changed on the way."""

from __future__ import annotations

import stat
from pathlib import Path

import psycopg
import pytest

from mlops_platform.local.postgres import LocalPostgres, free_port


def _modes(path: Path) -> dict[Path, int]:
    return {folder: stat.S_IMODE(folder.stat().st_mode) for folder in [path, *path.parents]}


def test_it_runs_from_a_private_folder_and_opens_none(tmp_path: Path) -> None:
    """A 0700 folder (what `mktemp -d` makes, and root's home): the server starts inside it, as
    root too, and the folders above its data keep their modes."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    before = _modes(private)
    server = LocalPostgres(private / "state" / "data", free_port(), durable=False)
    server.init()
    server.start()
    try:
        with psycopg.connect(server.conninfo()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()
    assert not server.is_running()
    assert _modes(private) == before
    assert stat.S_IMODE(private.stat().st_mode) == 0o700


def test_with_a_password_every_login_needs_one(tmp_path: Path) -> None:
    """As `mlops up` runs it: loopback logins without the password are refused (scram), the
    superuser's and each database user's own passwords let them in."""
    server = LocalPostgres(tmp_path / "data", free_port(), durable=False, password="s3 cret'")
    server.init()
    server.start()
    try:
        bare = f"host=127.0.0.1 port={server.port} dbname=postgres"
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(f"{bare} user=postgres").close()
        with psycopg.connect(server.conninfo()) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
        server.ensure_database("rawdata", "rawdata", "raw-pass")
        with psycopg.connect(f"{bare} user=rawdata password=raw-pass dbname=rawdata"):
            pass
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(f"{bare} user=rawdata password=rawdata dbname=rawdata").close()
    finally:
        server.stop()


def test_a_trusting_folder_from_an_earlier_version_is_given_passwords(tmp_path: Path) -> None:
    """A data folder made when loopback was trusted, with a role whose password was its name:
    started with a password, the server asks for it from then on, and the role's is replaced."""
    port = free_port()
    earlier = LocalPostgres(tmp_path / "data", port, durable=False)
    earlier.init()
    earlier.start()
    earlier.ensure_database("rawdata", "rawdata", "rawdata")
    earlier.stop()
    server = LocalPostgres(tmp_path / "data", port, durable=False, password="now-secret")
    server.start()
    try:
        bare = f"host=127.0.0.1 port={port}"
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(f"{bare} user=postgres dbname=postgres").close()
        server.ensure_database("rawdata", "rawdata", "generated")
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(f"{bare} user=rawdata password=rawdata dbname=rawdata").close()
        with psycopg.connect(f"{bare} user=rawdata password=generated dbname=rawdata"):
            pass
    finally:
        server.stop()
    server.start()  # and again: nothing left to change
    server.stop()
