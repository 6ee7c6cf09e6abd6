"""``mlops up`` on a fresh state folder: PostgreSQL and the simulator start, a batch lands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

from mlops_platform.local.postgres import free_port


def _mlops(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlops_platform.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _started_by(state: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(state) in cmdline or "mlops_platform.cli datasource" in cmdline:
            found.append(process)
    return found


def test_up_runs_a_batch_into_raw_and_clean_and_down_stops_everything(tmp_path: Path) -> None:
    state = tmp_path / "state"
    pg_port, sim_port = free_port(), free_port()
    env = {
        **os.environ,
        "MLOPS_STATE_DIR": str(state),
        "MLOPS_PG_PORT": str(pg_port),
        "MLOPS_SIM_PORT": str(sim_port),
        "MLOPS_DATASOURCE_URL": f"http://127.0.0.1:{sim_port}",
        "MLOPS_RAW_DB_URL": f"postgresql://mlops:mlops@127.0.0.1:{pg_port}/rawdata",
        "MLOPS_CLEAN_DB_URL": f"postgresql://mlops:mlops@127.0.0.1:{pg_port}/cleandata",
        "MLOPS_SIM_BATCH_SIZE": "300",
    }
    try:
        up = _mlops(["up"], env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "rows received and stored in RAW" in up.stdout
        assert "cleaned" in up.stdout
        again = _mlops(["up"], env)  # twice is safe: services reused, next batch collected
        assert again.returncode == 0, again.stdout + again.stderr
        assert "Batch 2 " in again.stdout
        status = _mlops(["status"], env)
        assert status.stdout.count("up") >= 2, status.stdout
    finally:
        down = _mlops(["down"], env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert _started_by(state) == []
    assert (state / "postgres" / "data" / "PG_VERSION").exists()  # data kept
