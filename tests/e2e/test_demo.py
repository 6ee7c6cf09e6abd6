"""`mlops demo` on a fresh folder: every batch through the pipelines, predictions through the API,
everything stopped; then its results are checked in the stores and the registry it left."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mlops_platform.local import platform
from mlops_platform.pipelines import registry
from mlops_platform.storage.engine import make_engine
from mlops_platform.storage.tables import batches, clean_listings, model_history, rejected
from tests.e2e.conftest import SMALL, fresh_settings, mlops, processes_of

pytestmark = pytest.mark.integration


def test_demo_runs_the_lifecycle_and_leaves_consistent_stores(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    settings = fresh_settings(state)
    result = mlops(["demo", "--keep", str(state)], settings)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(rf"│ batches\s+│\s+{SMALL['sim_batches']} │", out), out
    production = re.search(r"│ model in production\s+│\s+v(\d+) │", out)
    assert production, out
    assert re.search(r"API MAE on 200 held-out listings │\s+\$[\d,]+ │", out), out
    assert "batch-1: promoted" in out
    assert "Downloading artifacts" not in out, "the pipelines' chatter goes to the log"
    assert processes_of(settings) == [], "the demo stops what it started"

    # Its stores and registry, read back by starting the kept state on new ports.
    again = fresh_settings(state)
    try:
        platform.up(again, services=("postgres", "s3", "mlflow"))
        raw, clean = make_engine(again.raw_url), make_engine(again.clean_url)
        with raw.connect() as conn:
            assert conn.execute(select(func.count()).select_from(batches)).scalar_one() == 4
        with clean.connect() as conn:
            cleaned = conn.execute(select(func.count()).select_from(clean_listings)).scalar_one()
            dropped = conn.execute(select(func.count()).select_from(rejected)).scalar_one()
            decisions = conn.execute(
                select(model_history.c.data_version, model_history.c.outcome).order_by(
                    model_history.c.id
                )
            ).all()
        raw.dispose()
        clean.dispose()
        assert cleaned + dropped == SMALL["sim_batches"] * SMALL["sim_batch_size"]
        assert [d.data_version for d in decisions] == [f"batch-{n}" for n in range(1, 5)]
        for data_version, outcome in decisions:
            assert f"{data_version}: {outcome}" in out
        served = registry.production(again)
        assert served is not None
        assert served.version == production.group(1)
        promoted = [d for d in decisions if d.outcome == "promoted"]
        assert len(promoted) == int(re.search(r"│ promoted\s+│\s+(\d+) │", out).group(1))
    finally:
        platform.down(again)
