"""Test helpers shared by the suites: real servers in threads, simulator data as received."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine

from mlops_platform.datasource.client import Batch, parse_batch
from mlops_platform.datasource.simulator import SimulatorConfig, generate_batch
from mlops_platform.local.postgres import free_port
from mlops_platform.pipelines.clean import RawRow, clean_pending, clean_rows
from mlops_platform.pipelines.ingest import store_batch
from mlops_platform.schema import FIELDS
from mlops_platform.settings import Settings

# A valid listing as RAW stores it: every value is the text the source sent.
RAW_LISTING: dict[str, str] = {
    "brokered_by": "103378",
    "status": "for_sale",
    "price": "325000",
    "bed": "3",
    "bath": "2",
    "acre_lot": "0.25",
    "street": "1698080",
    "city": "Austin",
    "state": "TX",
    "zip_code": "78701",
    "house_size": "1850",
    "prev_sold_date": "2019-06-14",
}


def installed(tool: str, how: str) -> str:
    """Path of ``tool`` (PATH, then /usr/bin). Missing: the test fails under MLOPS_REQUIRE_ALL=1
    (CI, where nothing may skip) and skips otherwise, saying ``how`` to get it."""
    found = shutil.which(tool) or next(
        (p for p in (f"/usr/bin/{tool}",) if os.access(p, os.X_OK)), None
    )
    if found:
        return found
    missing(f"{tool} is not installed: {how}")


def missing(reason: str) -> NoReturn:
    """Something a test needs is not there: it fails under MLOPS_REQUIRE_ALL=1 (CI, where nothing
    may skip) and skips otherwise, with ``reason``."""
    if os.environ.get("MLOPS_REQUIRE_ALL") == "1":
        pytest.fail(f"{reason} (MLOPS_REQUIRE_ALL=1: nothing may be skipped)", pytrace=False)
    pytest.skip(reason)


@contextmanager
def serve(app: FastAPI, port: int | None = None) -> Iterator[str]:
    """Run ``app`` on a real uvicorn server in a thread; yields its base URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def received(records: list[dict[str, Any]], number: int, day: str = "Wednesday") -> Batch:
    """Records as the client receives them from group 1: through JSON, numbers kept as text."""
    payload = {"group_number": 1, "day": day, "batch_number": number, "data": records}
    return parse_batch(json.dumps(payload), "http://simulator", 1, day)


def collect(raw: Engine, clean: Engine, config: SimulatorConfig, number: int) -> None:
    """One simulator batch into RAW and CLEAN, as the data pipeline does."""
    store_batch(raw, received(generate_batch(config, 1, "Wednesday", number), number))
    clean_pending(raw, clean, test_fraction=0.2)


def clean_frame(config: SimulatorConfig, *batches: int) -> pd.DataFrame:
    """Simulator batches cleaned in memory, shaped like ``load_listings`` (ISO dates)."""
    rows = []
    for number in batches:
        records = generate_batch(config, 1, "Wednesday", number)
        raw = [RawRow(number, i, {f: r.get(f) for f in FIELDS}) for i, r in enumerate(records)]
        accepted, _ = clean_rows(raw, as_of=date(2026, 1, 1), test_fraction=0.2)
        for row in accepted:
            values = row.listing.model_dump()
            sold = values["prev_sold_date"]
            values["prev_sold_date"] = sold.isoformat() if sold else None
            rows.append({**values, "batch_id": number, "row_key": row.row_key, "split": row.split})
    return pd.DataFrame(rows)


def register_unloadable_copy(settings: Settings, good: str, folder: Path) -> str:
    """A deliberate fault: a registered version whose model folder lacks the model file.

    A copy of version ``good`` with the serialised estimator deleted, logged and registered
    through the real server, so the registry and S3 hold exactly what a broken upload leaves.
    ``folder`` is downloaded into, then deleted."""
    import mlflow  # here: most suites using this module never touch MLflow (a slow import)

    from mlops_platform.pipelines import registry

    registry.client(settings)
    try:
        local = Path(
            mlflow.artifacts.download_artifacts(
                f"models:/{settings.model_name}/{good}", dst_path=str(folder)
            )
        )
        removed = [p for p in local.iterdir() if p.suffix in (".skops", ".pkl")]
        assert removed, f"no serialised model found in {sorted(p.name for p in local.iterdir())}"
        for path in removed:
            path.unlink()
        mlflow.set_experiment(settings.experiment_name)
        with mlflow.start_run(run_name="deliberately-unloadable") as run:
            mlflow.log_artifacts(str(local), "model")
        version = mlflow.register_model(f"runs:/{run.info.run_id}/model", settings.model_name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return str(version.version)
