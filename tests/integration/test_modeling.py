"""Modeling against a real MLflow server (PostgreSQL metadata, S3 artifacts) and real stores.

The story of one group's batches: the first model is promoted because there is none; a batch
from the same market is skipped; a drifted batch triggers a retrain whose model wins on the new
market and is promoted; the history table tells it in order, and a re-run changes nothing.
"""

from __future__ import annotations

import logging
import re
import threading

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from sqlalchemy import select
from typer.testing import CliRunner

from mlops_platform.cli import app
from mlops_platform.datasource.simulator import SimulatorConfig
from mlops_platform.pipelines import modeling, registry
from mlops_platform.pipelines.dataset import load_listings
from mlops_platform.pipelines.evaluate import evaluate
from mlops_platform.pipelines.explain import explain as shap_explain
from mlops_platform.pipelines.modeling import run_model_pipeline
from mlops_platform.settings import Settings
from mlops_platform.storage.tables import model_history
from tests.conftest import Stores
from tests.support import collect

# The story needs batch 2's model to win beyond the noise of ~450 test rows. Seeds 1-3 and 5-7
# all tell it (gain lower bounds +1.0 % to +7.7 %); seed 4 stopped doing so once repaired rows
# joined CLEAN (+3.7 %, lower bound -1.5 %): 7 has the widest room.
CONFIG = SimulatorConfig(batches=6, batch_size=1200, seed=7, drift_at=5, drift_strength=1.5)


def _settings(stores: Stores, mlflow_settings: Settings) -> Settings:
    return stores.with_model(
        mlflow_settings.mlflow_tracking_uri,
        "house_price",
        # A second batch as large as the first is "enough new rows"; a third (half) is not.
        retrain_new_rows_ratio=0.8,
    )


def _collect(stores: Stores, number: int) -> None:
    collect(stores.raw, stores.clean, CONFIG, number)


def _history(stores: Stores) -> list[dict]:
    with stores.clean.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(select(model_history).order_by(model_history.c.id)).mappings()
        ]


def _versions(settings: Settings) -> list[str]:
    found = MlflowClient(settings.mlflow_tracking_uri).search_model_versions(
        f"name = '{settings.model_name}'"
    )
    return sorted(v.version for v in found)


def test_the_story_of_a_drifting_market(stores: Stores, mlflow_settings: Settings) -> None:
    settings = _settings(stores, mlflow_settings)

    _collect(stores, 1)
    first = run_model_pipeline(settings)
    assert first["outcome"] == "promoted", first["reason"]
    assert first["reason"].startswith("promoted: no model in production yet")
    assert registry.production(settings).version == first["candidate_version"]

    _collect(stores, 2)
    second = run_model_pipeline(settings)  # doubling the data is reason enough to try
    assert second["retrain"] is True, second["decision_reasons"]
    assert any("new rows" in reason for reason in second["decision_reasons"])
    assert second["outcome"] == "promoted", second["reason"]
    assert second["production_metrics"] is not None  # compared with the champion

    _collect(stores, 3)
    third = run_model_pipeline(settings)
    assert third["outcome"] == "skipped"
    assert "keeping the production model" in third["reason"]
    assert third["candidate_version"] is None

    old = registry.production(settings)
    _collect(stores, 5)  # the drifted market
    seen: list[str] = []
    stop = threading.Event()

    def watch_alias() -> None:
        while not stop.is_set():
            seen.append(registry.production(settings).version)

    watcher = threading.Thread(target=watch_alias)
    watcher.start()
    try:
        drifted = run_model_pipeline(settings)
    finally:
        stop.set()
        watcher.join()
    assert drifted["retrain"] is True
    assert drifted["drifted_features"], drifted["decision_reasons"]
    assert any("data drift" in reason for reason in drifted["decision_reasons"])
    assert drifted["outcome"] == "promoted", drifted["reason"]
    new = registry.production(settings)
    assert new.version == drifted["candidate_version"] != old.version
    assert set(seen) <= {old.version, new.version}  # the alias was never missing or partial
    assert seen, "the alias watcher never read"

    newest = load_listings(stores.clean, after_batch=3)
    newest = newest[newest["split"] == "test"]
    assert (
        evaluate(registry.load(settings, new), newest)["mae"]
        < evaluate(registry.load(settings, old), newest)["mae"]
    )

    history = _history(stores)
    assert [h["outcome"] for h in history] == [
        first["outcome"],
        second["outcome"],
        "skipped",
        "promoted",
    ]
    assert [h["data_version"] for h in history] == ["batch-1", "batch-2", "batch-3", "batch-4"]
    for row in history:
        assert row["reason"]
        assert bool(row["shap_uri"]) == (row["candidate_version"] is not None)

    importance = mlflow.artifacts.load_dict(f"{drifted['shap_uri']}/importance.json")
    assert set(importance["importance"]) >= {"house_size", "zip_code", "state"}
    # One family by default: fitted once on every train row, nothing compared on validation.
    assert drifted["candidate_family"] == "linear_trees"
    assert drifted["validation_metrics"] is None
    run = MlflowClient(settings.mlflow_tracking_uri).get_run(new.run_id)
    assert run.data.params["families"] == "linear_trees"
    assert not [key for key in run.data.metrics if key.startswith("validation_")]

    versions = _versions(settings)
    again = run_model_pipeline(settings)  # a re-run changes nothing
    assert again["id"] == history[-1]["id"]
    assert _versions(settings) == versions
    assert len(_history(stores)) == 4


@pytest.fixture
def other_stores(postgres):
    from tests.conftest import _stores

    yield from _stores(postgres, shared=False)


def test_same_data_and_seed_give_the_same_decisions(
    stores: Stores, other_stores: Stores, mlflow_settings: Settings
) -> None:
    """With several families configured, each new model is the lowest validation MAE among
    them, and the same data and seed choose and score the same everywhere."""
    runs = []
    for target in (stores, other_stores):
        settings = _settings(target, mlflow_settings).replace(model_families="hgb,linear_trees")
        outcomes = []
        for number in (1, 2):
            _collect(target, number)
            row = run_model_pipeline(settings)
            validation = row["validation_metrics"]
            assert set(validation) == {"hgb", "linear_trees"}
            chosen = validation[row["candidate_family"]]["mae"]
            assert chosen == min(scores["mae"] for scores in validation.values())
            outcomes.append(
                (row["outcome"], row["candidate_family"], round(row["candidate_metrics"]["mae"], 2))
            )
        runs.append(outcomes)
    assert runs[0] == runs[1]


def test_an_older_data_version_decided_after_a_newer_one_is_superseded(
    stores: Stores, mlflow_settings: Settings
) -> None:
    """The reported race: Airflow runs carrying older data (decided from their asset events)
    go on after a newer version was decided. Neither trains nor promotes; both are recorded as
    superseded, naming the newer data; production stays the model of the newest data."""
    settings = _settings(stores, mlflow_settings)
    for number in (1, 2, 3):
        _collect(stores, number)
    trained_first = modeling.decide(settings)  # a run for batch 3 that trains before ...
    assert trained_first["retrain"] is True
    stale_candidate = modeling.train(settings, trained_first)
    assert stale_candidate is not None
    _collect(stores, 4)
    not_trained = modeling.decide(settings)  # ... and one for batch 4 that has not trained yet
    for number in (5, 6):
        _collect(stores, number)
    newest = run_model_pipeline(settings)  # meanwhile the CLI decides batch 6 first
    assert newest["outcome"] == "promoted", newest["reason"]
    served = registry.production(settings).version

    evaluation = modeling.evaluate(settings, trained_first, stale_candidate)
    promotion = modeling.promote(settings, trained_first, stale_candidate, evaluation)
    assert promotion["promoted"] is False
    first = modeling.record(settings, trained_first, stale_candidate, evaluation, promotion, None)
    assert modeling.train(settings, not_trained) is None, "superseded data never trains"
    second = modeling.record(settings, not_trained, None, None, {"promoted": False}, None)

    for row, label in ((first, "batch-3"), (second, "batch-4")):
        assert row["data_version"] == label
        assert row["outcome"] == "superseded"
        assert row["promoted"] is False
        assert f"data {newest['data_version']} was decided" in row["reason"]
    assert registry.production(settings).version == served
    outcomes = [(r["data_version"], r["outcome"]) for r in _history(stores)]
    assert outcomes == [
        ("batch-6", "promoted"),
        ("batch-3", "superseded"),
        ("batch-4", "superseded"),
    ]
    # Idempotent: the stale runs again change nothing.
    again = modeling.promote(settings, trained_first, stale_candidate, evaluation)
    assert again["promoted"] is False
    assert len(_history(stores)) == 3


def test_a_version_registered_by_a_run_that_died_is_recorded_when_its_data_is_superseded(
    stores: Stores, mlflow_settings: Settings
) -> None:
    """A run registers its candidate and dies (PostgreSQL killed before the decision); newer data
    is decided before Airflow retries it. The retry neither trains nor promotes, and its
    superseded row names the version the dead attempt registered: every registered version has
    a decision."""
    settings = _settings(stores, mlflow_settings)
    _collect(stores, 1)
    died = modeling.decide(settings)
    registered = modeling.train(settings, died)  # ... and the run ends here
    assert registered is not None
    _collect(stores, 2)
    newest = run_model_pipeline(settings)
    assert newest["data_version"] == "batch-2"

    assert modeling.train(settings, died) is None, "superseded data never trains"
    row = modeling.record(settings, died, None, None, {"promoted": False}, None)

    assert (row["data_version"], row["outcome"]) == ("batch-1", "superseded")
    assert row["candidate_version"] == registered["version"]
    assert row["candidate_run_id"] == registered["run_id"]
    recorded = {r["candidate_version"] for r in _history(stores)}
    assert set(_versions(settings)) <= recorded, "a registered version has no decision"
    again = modeling.record(settings, died, None, None, {"promoted": False}, None)
    assert again["id"] == row["id"]


def test_two_runs_training_the_same_data_at_once_register_one_version(
    stores: Stores, mlflow_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Airflow and the CLI deciding the same data at once (found by make reliability: both
    registered a version, and only one got a decision). The second waits for the first's
    registration, says that it waits, and reuses it."""
    caplog.set_level(logging.INFO, logger=modeling.__name__)
    settings = _settings(stores, mlflow_settings)
    _collect(stores, 1)
    decision = modeling.decide(settings)
    assert decision["retrain"] is True
    results: list[dict] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(modeling.train(settings, decision))
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors
    assert [r["version"] for r in results] == ["1", "1"], results
    assert _versions(settings) == ["1"]
    waited = [r for r in caplog.records if "another run is training this data" in r.getMessage()]
    assert len(waited) == 1, [r.getMessage() for r in caplog.records]


def test_reference_rows_are_what_production_was_trained_on(
    stores: Stores, mlflow_settings: Settings
) -> None:
    settings = _settings(stores, mlflow_settings)
    _collect(stores, 1)
    run_model_pipeline(settings)
    _collect(stores, 2)
    decision = modeling.decide(settings)
    assert decision["reference_rows"] == int(registry.production(settings).tags["train_rows"])


def test_the_runs_shap_values_are_of_the_background_the_api_explains_against(
    stores: Stores, mlflow_settings: Settings
) -> None:
    """A batch landing between evaluate and explain (Airflow's data DAG does not wait) leaves
    the run's SHAP values on the rows evaluate logged as the API's background."""
    settings = _settings(stores, mlflow_settings)
    _collect(stores, 1)
    decision = modeling.decide(settings)
    candidate = modeling.train(settings, decision)
    modeling.evaluate(settings, decision, candidate)
    _collect(stores, 2)  # new test rows in CLEAN before explain runs
    explained = modeling.explain(settings, candidate)

    background = modeling.read_background(settings, candidate["run_id"])
    version = registry.ModelVersion(
        settings.model_name, candidate["version"], candidate["run_id"], {}
    )
    expected = shap_explain(registry.load(settings, version), background, background)
    logged = mlflow.artifacts.load_dict(f"{explained['shap_uri']}/values.json")
    assert len(logged["values"]) == len(background) > 0
    assert logged["base_value"] == pytest.approx(expected.base_value)
    np.testing.assert_allclose(logged["values"], expected.values.to_numpy(), atol=1e-5)


def test_the_cli_shows_mape_as_a_percentage_and_no_download_bars(
    stores: Stores, mlflow_settings: Settings
) -> None:
    settings = _settings(stores, mlflow_settings)
    _collect(stores, 1)
    result = CliRunner().invoke(app, ["pipeline", "run", "model"], env=settings.to_env())
    assert result.exit_code == 0, result.output
    assert re.search(r"MAPE\s+│\s+\d+\.\d %", result.output), result.output
    assert "Downloading artifacts" not in result.output
    assert "Decision: promoted" in result.output
