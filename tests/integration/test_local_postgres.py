"""The local PostgreSQL server as `mlops up` and the tests run it: from a private checkout, with
no folder's permissions changed on the way."""

from __future__ import annotations

import stat
from pathlib import Path

import psycopg

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
