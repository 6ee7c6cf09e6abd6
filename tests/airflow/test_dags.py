"""The DAGs in ``dags/`` under real Airflow 3.3: parsed by DagBag, run with ``dag.test()``.

Runs go against real things: the simulator served over HTTP, fresh RAW/CLEAN databases, the
session's MLflow server (PostgreSQL + S3) and the inference API on a real uvicorn. Settings reach
the tasks the way they do in a deployment: as ``MLOPS_*`` variables read inside each task.
"""

from __future__ import annotations

import ast
import itertools
import os
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from mlops_platform.datasource.app import create_app as create_source_app
from mlops_platform.datasource.simulator import SimulatorConfig, SyntheticSource
from mlops_platform.local.postgres import free_port
from mlops_platform.pipelines import publish, registry
from mlops_platform.serving.app import create_app as create_api_app
from mlops_platform.settings import Settings, load_settings
from mlops_platform.storage.tables import batches, clean_listings, model_history, raw_listings
from tests.airflow.conftest import DAGS, asset_events, queued_runs, task_states, xcom
from tests.conftest import Stores
from tests.support import serve

pytestmark = pytest.mark.integration

CONFIG = SimulatorConfig(batches=1, batch_size=500, seed=23)
TOKEN = "airflow-test-token"
SUCCESS = "success"
SKIPPED = "skipped"


# --- structure ------------------------------------------------------------------------------------


def test_dags_import_without_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dag_ids) == ["data_pipeline", "modeling_pipeline", "production_pipeline"]


def _edges(dag: Any) -> set[tuple[str, str]]:
    return {(task.task_id, down) for task in dag.tasks for down in task.downstream_task_ids}


def _triggers(dag: Any) -> list[str]:
    """Names of the assets whose events start the DAG."""
    return [asset.name for asset in dag.timetable.asset_condition.objects]


def test_data_pipeline_is_fetch_ingest_clean_every_hour(dagbag: Any) -> None:
    dag = dagbag.dags["data_pipeline"]
    assert _edges(dag) == {("fetch", "ingest"), ("ingest", "clean")}
    assert dag.schedule == "@hourly"
    assert dag.timetable.expression == "0 * * * *"
    assert dag.catchup is False
    (alias,) = dag.get_task("clean").outlets
    assert type(alias).__name__ == "AssetAlias"  # an event only when new rows were written


def test_modeling_pipeline_runs_on_clean_data_in_order(dagbag: Any) -> None:
    dag = dagbag.dags["modeling_pipeline"]
    order = ["decide", "train", "evaluate", "promote", "explain", "record"]
    chain = set(itertools.pairwise(order))
    assert chain <= _edges(dag)
    assert set(dag.get_task("record").upstream_task_ids) == {
        "decide",
        "train",
        "evaluate",
        "promote",
        "explain",
    }
    assert _triggers(dag) == ["clean_data"]
    assert not dag.get_task("promote").outlets
    # The production event comes from the last task, once the SHAP background exists.
    (alias,) = dag.get_task("record").outlets
    assert type(alias).__name__ == "AssetAlias"


def test_production_pipeline_runs_on_production_model(dagbag: Any) -> None:
    dag = dagbag.dags["production_pipeline"]
    assert _edges(dag) == {("notify", "verify")}
    assert _triggers(dag) == ["production_model"]


def test_network_tasks_retry_with_backoff_and_every_task_has_a_timeout(dagbag: Any) -> None:
    network = {("data_pipeline", "fetch"), ("production_pipeline", "notify")}
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            assert task.execution_timeout is not None, f"{dag.dag_id}.{task.task_id}"
            if (dag.dag_id, task.task_id) in network:
                assert task.retries >= 3
                assert task.retry_exponential_backoff >= 2
                assert task.max_retry_delay is not None


def test_the_data_schedule_comes_from_the_environment(airflow_db: None, monkeypatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("MLOPS_DATA_SCHEDULE", "*/10 * * * *")
    bag = DagBag(dag_folder=str(DAGS / "data_pipeline.py"))
    assert bag.import_errors == {}
    assert bag.dags["data_pipeline"].timetable.expression == "*/10 * * * *"


def test_parsing_reads_no_task_settings(airflow_db: None, monkeypatch) -> None:
    """Settings are read when a task runs: a bad MLOPS_* value cannot break parsing."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("MLOPS_API_TOKEN", "short")  # invalid: fewer than 8 characters
    monkeypatch.setenv("MLOPS_RAW_DB_URL", "not a url")
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert len(bag.dags) == 3


def test_dags_import_only_airflow_and_the_package() -> None:
    allowed = {"airflow", "mlops_platform", "__future__", *sys.stdlib_module_names}
    for path in sorted(DAGS.glob("*.py")):
        tree = ast.parse(path.read_text())
        roots = {
            name.split(".")[0]
            for node in ast.walk(tree)
            for name in (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
        }
        assert roots <= allowed, f"{path.name} imports {sorted(roots - allowed)}"


# --- runs -----------------------------------------------------------------------------------------


def _count(engine: Any, table: Any) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def _counts(stores: Stores) -> dict[str, int]:
    return {
        "batches": _count(stores.raw, batches),
        "raw": _count(stores.raw, raw_listings),
        "clean": _count(stores.clean, clean_listings),
        "history": _count(stores.clean, model_history),
    }


def _use(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tasks read their settings from MLOPS_* variables, as on an Airflow worker."""
    for name in [n for n in os.environ if n.startswith("MLOPS_")]:
        monkeypatch.delenv(name)
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def source() -> Iterator[str]:
    """The simulator, served over HTTP: one batch for each group and day."""
    with serve(create_source_app(SyntheticSource(CONFIG))) as url:
        yield url


def _run(dagbag: Any, dag_id: str) -> Any:
    run = dagbag.dags[dag_id].test()
    assert run.state == SUCCESS, task_states(run)
    return run


def test_data_pipeline_emits_clean_data_only_for_new_rows(
    dagbag: Any, fresh_assets: None, stores: Stores, source: str, monkeypatch
) -> None:
    _use(stores.settings(datasource_url=source), monkeypatch)

    first = _run(dagbag, "data_pipeline")
    after_first = _counts(stores)
    assert task_states(first) == {"fetch": SUCCESS, "ingest": SUCCESS, "clean": SUCCESS}
    assert after_first["raw"] == CONFIG.batch_size
    assert 0 < after_first["clean"] <= CONFIG.batch_size
    (batch_id,) = xcom(first, "clean")["batches"]
    assert asset_events("clean_data") == [
        ("data_pipeline", {"batches": [batch_id], "cleaned": after_first["clean"]})
    ]
    assert queued_runs() == ["modeling_pipeline"]

    exhausted = _run(dagbag, "data_pipeline")  # the source has no more batches
    assert task_states(exhausted) == {"fetch": SKIPPED, "ingest": SKIPPED, "clean": SKIPPED}
    assert len(asset_events("clean_data")) == 1
    assert _counts(stores) == after_first

    # The same batch delivered again: recognised in RAW, nothing new in CLEAN, no event.
    restart = {"group_number": 1, "day": "Wednesday"}
    httpx.get(f"{source}/restart_data_generation", params=restart).raise_for_status()
    again = _run(dagbag, "data_pipeline")
    assert set(task_states(again).values()) == {SUCCESS}
    assert xcom(again, "ingest")["stored"] is False
    assert xcom(again, "clean")["cleaned"] == 0
    assert len(asset_events("clean_data")) == 1
    assert _counts(stores) == after_first


def _platform(
    mlflow_settings: Settings, stores: Stores, source: str, api_port: int, **extra: object
) -> Settings:
    """The test's stores, MLflow, data source and API, as the DAGs' tasks will see them."""
    return mlflow_settings.replace(
        raw_db_url=stores.raw_url,
        clean_db_url=stores.clean_url,
        datasource_url=source,
        api_url=f"http://127.0.0.1:{api_port}",
        api_token=TOKEN,
        model_poll_interval_s=3600.0,  # only the hook moves the served model
        **extra,
    )


def _versions(settings: Settings) -> list[str]:
    found = registry.client(settings).search_model_versions(f"name = '{settings.model_name}'")
    return sorted(v.version for v in found)


def test_new_data_is_modelled_promoted_and_served(
    dagbag: Any,
    fresh_assets: None,
    stores: Stores,
    source: str,
    mlflow_settings: Settings,
    monkeypatch,
) -> None:
    api_port = free_port()
    settings = _platform(mlflow_settings, stores, source, api_port)
    _use(settings, monkeypatch)
    _run(dagbag, "data_pipeline")
    assert len(asset_events("clean_data")) == 1

    with serve(create_api_app(settings), port=api_port) as api:
        assert httpx.get(f"{api}/model").status_code == 503  # nothing in production yet

        modeled = _run(dagbag, "modeling_pipeline")
        assert set(task_states(modeled).values()) == {SUCCESS}
        assert xcom(modeled, "promote")["promoted"] is True
        version = xcom(modeled, "train")["version"]
        assert registry.production(settings).version == version
        assert asset_events("production_model") == [("modeling_pipeline", {"version": version})]
        assert "production_pipeline" in queued_runs()
        history = xcom(modeled, "record")
        assert (history["outcome"], history["candidate_version"]) == ("promoted", version)
        after_modeling = _counts(stores)
        assert after_modeling["history"] == 1

        served = _run(dagbag, "production_pipeline")
        assert xcom(served, "notify") | {"detail": ""} == {
            "outcome": "loaded",
            "version": version,
            "previous": None,
            "detail": "",
        }
        assert xcom(served, "verify") == {"model": settings.model_name, "version": version}
        assert httpx.get(f"{api}/model").json()["version"] == version

        # Every DAG again: nothing new is stored, trained, promoted or announced.
        _run(dagbag, "data_pipeline")
        again = _run(dagbag, "modeling_pipeline")
        assert xcom(again, "decide")["already_decided"] is True
        assert xcom(again, "train") is None
        assert xcom(again, "promote")["promoted"] is False
        assert xcom(again, "record")["decided_at"] == history["decided_at"]
        served_again = _run(dagbag, "production_pipeline")
        assert xcom(served_again, "notify")["outcome"] == "unchanged"
        assert httpx.get(f"{api}/model").json()["version"] == version

    assert _counts(stores) == after_modeling
    assert _versions(settings) == [version]
    assert len(asset_events("clean_data")) == 1
    assert len(asset_events("production_model")) == 1


# Four batches of one market, then a drifted fifth (the simulator's regime change).
DRIFTING = SimulatorConfig(batches=5, batch_size=1200, seed=4, drift_at=5, drift_strength=1.5)


def test_several_batches_with_a_drift_through_the_three_dags(
    dagbag: Any, fresh_assets: None, stores: Stores, mlflow_settings: Settings, monkeypatch
) -> None:
    api_port = free_port()
    with serve(create_source_app(SyntheticSource(DRIFTING))) as source:
        settings = _platform(mlflow_settings, stores, source, api_port, retrain_new_rows_ratio=0.8)
        _use(settings, monkeypatch)
        with serve(create_api_app(settings), port=api_port) as api:
            for _ in range(DRIFTING.batches):
                _run(dagbag, "data_pipeline")
                if "modeling_pipeline" not in queued_runs():
                    continue
                modeled = _run(dagbag, "modeling_pipeline")
                if xcom(modeled, "promote")["promoted"]:
                    _run(dagbag, "production_pipeline")
                    served = httpx.get(f"{api}/model").json()["version"]
                    assert served == xcom(modeled, "train")["version"]
            final = httpx.get(f"{api}/model").json()["version"]

    with stores.clean.connect() as conn:
        history = [
            dict(row)
            for row in conn.execute(select(model_history).order_by(model_history.c.id)).mappings()
        ]
    assert [row["data_version"] for row in history] == [f"batch-{n}" for n in range(1, 6)]
    assert history[0]["outcome"] == "promoted"
    assert "skipped" in {row["outcome"] for row in history[1:4]}  # the same market, no retrain
    drifted = history[-1]
    assert drifted["retrain"] is True
    assert any("data drift" in reason for reason in drifted["decision_reasons"])
    assert drifted["outcome"] == "promoted", drifted["reason"]
    assert all(row["reason"] for row in history)
    assert final == registry.production(settings).version == drifted["candidate_version"]
    promoted = [row["candidate_version"] for row in history if row["promoted"]]
    assert len(asset_events("production_model")) == len(promoted)


def test_publish_errors_say_what_to_fix(stores: Stores, mlflow_settings: Settings) -> None:
    """The hook task's function fails loudly (so Airflow retries) and names what to fix."""
    api_port = free_port()
    base = mlflow_settings.model_dump() | {"raw_db_url": stores.raw_url, "api_token": TOKEN}
    right = load_settings(**base | {"api_url": f"http://127.0.0.1:{api_port}"})
    wrong = right.model_copy(update={"api_token": "not-the-token"})
    nowhere = right.model_copy(update={"api_url": f"http://127.0.0.1:{free_port()}"})
    with serve(create_api_app(right), port=api_port):
        with pytest.raises(publish.PublishError, match="MLOPS_API_TOKEN"):
            publish.notify(wrong)
        with pytest.raises(publish.PublishError, match="HTTP 404"):
            publish.notify(right)  # nothing in production: the API has nothing to load
        with pytest.raises(publish.PublishError, match="no version of"):
            publish.verify(right)
    with pytest.raises(publish.PublishError, match=r"unreachable.*MLOPS_API_URL"):
        publish.notify(nowhere)
