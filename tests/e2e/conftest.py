"""End-to-end: the `mlops` command as a user runs it, in a fresh state folder on free ports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

from mlops_platform.local.platform import on_free_ports
from mlops_platform.settings import Settings, load_settings

# A small simulator, so a whole lifecycle takes seconds: drift from batch 3.
SMALL = {"sim_batches": 4, "sim_batch_size": 500, "sim_drift_at": 3, "sim_seed": 7}


def fresh_settings(state: Path, **overrides: object) -> Settings:
    return on_free_ports(load_settings(state_dir=state, **SMALL, **overrides))


def mlops(
    args: list[str], settings: Settings, timeout_s: float = 600, **env: str
) -> subprocess.CompletedProcess[str]:
    """`mlops ARGS` in a child process with ``settings`` as its MLOPS_* environment."""
    environment = {**os.environ, **settings.to_env(), "COLUMNS": "200", **env}
    # As a user who chose no hook token: the local platform generates one.
    environment.pop("MLOPS_API_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "mlops_platform.cli", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def processes_of(settings: Settings) -> list[str]:
    """Command lines of processes that belong to this platform (its state folder or ports)."""
    state = str(settings.state_dir.resolve())
    ports = [
        settings.pg_port,
        settings.s3_port,
        settings.mlflow_port,
        settings.sim_port,
        settings.api_port,
        settings.ui_port,
        settings.airflow_port,
        settings.exporter_port,
        settings.prometheus_port,
    ]
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "environ"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
            environ = process.info["environ"] or {}
        except (psutil.Error, TypeError):
            continue
        if "pytest" in cmdline:
            continue
        mine = state in cmdline or environ.get("MLOPS_STATE_DIR") == str(settings.state_dir)
        mine = mine or any(f"-p {port} " in cmdline for port in ports)
        if mine:
            found.append(f"{process.info['pid']}: {cmdline}")
    return found
