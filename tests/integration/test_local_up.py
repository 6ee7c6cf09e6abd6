"""``mlops up`` on a fresh state folder: every local service starts, a batch lands, a model is
trained and promoted; ``mlops down`` stops everything and keeps the data."""

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
        timeout=300,
    )


def _left_behind(markers: list[str]) -> list[str]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if any(marker in cmdline for marker in markers) and "pytest" not in cmdline:
            found.append(cmdline)
    return found


def test_up_collects_trains_and_down_stops_everything(tmp_path: Path) -> None:
    state = tmp_path / "state"
    pg, sim, s3, mlflow = (free_port() for _ in range(4))
    env = {
        **os.environ,
        "MLOPS_STATE_DIR": str(state),
        "MLOPS_PG_PORT": str(pg),
        "MLOPS_SIM_PORT": str(sim),
        "MLOPS_DATASOURCE_URL": f"http://127.0.0.1:{sim}",
        "MLOPS_RAW_DB_URL": f"postgresql://mlops:mlops@127.0.0.1:{pg}/rawdata",
        "MLOPS_CLEAN_DB_URL": f"postgresql://mlops:mlops@127.0.0.1:{pg}/cleandata",
        "MLOPS_MLFLOW_BACKEND_DB_URL": f"postgresql://mlflow:mlflow@127.0.0.1:{pg}/mlflow",
        "MLOPS_S3_PORT": str(s3),
        "MLOPS_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3}",
        "MLOPS_MLFLOW_PORT": str(mlflow),
        "MLOPS_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow}",
        "MLOPS_SIM_BATCH_SIZE": "800",
    }
    markers = [str(state), f"--port {mlflow}", f"-s3.port={s3}"]
    try:
        up = _mlops(["up"], env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "rows received and stored in RAW" in up.stdout
        assert "cleaned" in up.stdout
        model = _mlops(["pipeline", "run", "model"], env)
        assert model.returncode == 0, model.stdout + model.stderr
        assert "promoted" in model.stdout
        assert "no model in production yet" in model.stdout
        again = _mlops(["up"], env)  # twice is safe: services reused, next batch collected
        assert again.returncode == 0, again.stdout + again.stderr
        assert "Batch 2 " in again.stdout
        status = _mlops(["status"], env)
        assert status.stdout.count(" up ") == 4, status.stdout
    finally:
        down = _mlops(["down"], env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert _left_behind(markers) == []
    assert (state / "postgres" / "data" / "PG_VERSION").exists()  # data kept
