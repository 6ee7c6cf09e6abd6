"""``mlops up`` on a fresh state folder: every local service starts, a batch lands, a model is
trained and promoted; ``mlops down`` stops everything and keeps the data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

from mlops_platform.local.platform import on_free_ports
from mlops_platform.settings import load_settings


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
    settings = on_free_ports(load_settings(state_dir=state, sim_batch_size=800))
    env = {**os.environ, **settings.to_env()}
    markers = [str(state), f"--port {settings.mlflow_port}", f"-s3.port={settings.s3_port}"]
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
