"""The data pipeline end to end: simulator over HTTP → RAW → CLEAN, until the source ends."""

from __future__ import annotations

from sqlalchemy import func, select
from typer.testing import CliRunner

from mlops_platform.cli import app
from mlops_platform.datasource.app import create_app
from mlops_platform.datasource.simulator import SimulatorConfig, SyntheticSource
from mlops_platform.pipelines.data import run_data_pipeline
from mlops_platform.storage.tables import batches, clean_listings, raw_listings, rejected
from tests.conftest import Stores
from tests.support import serve

CONFIG = SimulatorConfig(batches=3, batch_size=400, seed=8)


def _count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_every_batch_flows_through_and_the_end_is_not_an_error(stores: Stores) -> None:
    with serve(create_app(SyntheticSource(CONFIG))) as url:
        settings = stores.settings(datasource_url=url, group_number=3, day="Friday")
        runs = [run_data_pipeline(settings) for _ in range(4)]
    assert [r["exhausted"] for r in runs] == [False, False, False, True]
    assert [r["ingest"]["batch_number"] for r in runs[:3]] == [1, 2, 3]
    assert runs[3]["ingest"] is None
    assert runs[3]["clean"]["rows_read"] == 0
    assert _count(stores.raw, batches) == 3
    assert _count(stores.raw, raw_listings) == 1200
    assert _count(stores.clean, clean_listings) + _count(stores.clean, rejected) == 1200
    assert sum(r["clean"]["cleaned"] for r in runs) == _count(stores.clean, clean_listings)


def test_cli_prints_what_happened(stores: Stores, monkeypatch) -> None:
    with serve(create_app(SyntheticSource(CONFIG))) as url:
        for name, value in {
            "MLOPS_RAW_DB_URL": stores.raw_url,
            "MLOPS_CLEAN_DB_URL": stores.clean_url,
            "MLOPS_DATASOURCE_URL": url,
        }.items():
            monkeypatch.setenv(name, value)
        runner = CliRunner()
        first = runner.invoke(app, ["pipeline", "run", "data"])
        assert first.exit_code == 0, first.output
        assert "Batch 1 (group 1/Wednesday): 400 rows received" in first.output
        assert "cleaned" in first.output
        assert "of which repaired" in first.output
        assert "rejected" in first.output
        for _ in range(2):
            runner.invoke(app, ["pipeline", "run", "data"])
        last = runner.invoke(app, ["pipeline", "run", "data"])
    assert last.exit_code == 0
    assert "No more data" in last.output


def test_cli_reports_an_unreachable_source(stores: Stores, monkeypatch) -> None:
    monkeypatch.setenv("MLOPS_RAW_DB_URL", stores.raw_url)
    monkeypatch.setenv("MLOPS_CLEAN_DB_URL", stores.clean_url)
    monkeypatch.setenv("MLOPS_DATASOURCE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("MLOPS_HTTP_RETRIES", "2")
    monkeypatch.setenv("MLOPS_HTTP_BACKOFF_S", "0")
    result = CliRunner().invoke(app, ["pipeline", "run", "data"])
    assert result.exit_code == 1
    assert "MLOPS_DATASOURCE_URL" in result.output
