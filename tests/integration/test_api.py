"""The inference API against a real MLflow registry (PostgreSQL + S3) and real RAW databases.

One module-scoped registry holds two versions trained by the real pipelines on simulator data;
each test moves the ``production`` alias where it needs it and builds its own app, so the
tests do not depend on each other's order.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, select

from mlops_platform import checks
from mlops_platform.datasource.simulator import SimulatorConfig, generate_batch
from mlops_platform.local.postgres import LocalPostgres, free_port
from mlops_platform.pipelines import modeling, registry
from mlops_platform.pipelines.features import raw_frame
from mlops_platform.pipelines.modeling import run_model_pipeline
from mlops_platform.pipelines.train import FAMILIES
from mlops_platform.schema import FEATURES, ListingFeatures
from mlops_platform.serving.app import create_app
from mlops_platform.serving.compiled import edge_rows, records_frame
from mlops_platform.serving.state import EXAMPLE_RECORD
from mlops_platform.settings import Settings, load_settings
from mlops_platform.storage.engine import normalise_url
from mlops_platform.storage.migrate import upgrade
from mlops_platform.storage.tables import inference_logs
from tests import support
from tests.conftest import Stores, _stores
from tests.plugins.mlflow_stack import MlflowServer

pytestmark = pytest.mark.integration

CONFIG = SimulatorConfig(batches=3, batch_size=400, seed=11, drift_at=3, drift_strength=1.0)
TOKEN = "test-token-123"
METRICS_DOC = Path(__file__).parents[2] / "docs" / "metrics.md"


@dataclass(frozen=True)
class Trained:
    """A registered model with two real versions (``first`` and ``second``) and their data."""

    settings: Settings
    first: str
    second: str
    records: list[dict[str, Any]]

    def promote(self, version: str) -> None:
        registry.set_production(self.settings, version)


def collect(stores: Stores, number: int) -> None:
    """One simulator batch into RAW and CLEAN, as the data pipeline does."""
    support.collect(stores.raw, stores.clean, CONFIG, number)


@pytest.fixture(scope="module")
def trained(postgres: LocalPostgres, mlflow_server: MlflowServer) -> Iterator[Trained]:
    stores_gen = _stores(postgres, shared=False)
    stores = next(stores_gen)
    settings = stores.with_model(mlflow_server.tracking_uri, "api", retrain_new_rows_ratio=0.8)
    collect(stores, 1)
    first = run_model_pipeline(settings)
    assert first["outcome"] == "promoted", first["reason"]
    collect(stores, 2)
    second = run_model_pipeline(settings)
    assert second["candidate_version"], second["decision_reasons"]
    # Inputs a client would send: the next batch's records that pass the request schema.
    records = []
    for raw in generate_batch(CONFIG, 1, "Wednesday", 3)[:200]:
        try:
            features = ListingFeatures(**{k: raw.get(k) for k in FEATURES})
        except ValueError:
            continue
        records.append(features.model_dump(mode="json"))
    yield Trained(settings, first["candidate_version"], second["candidate_version"], records[:50])
    next(stores_gen, None)


def api_settings(trained: Trained, stores: Stores, **overrides: Any) -> Settings:
    values = trained.settings.model_dump() | {
        "raw_db_url": stores.raw_url,
        "api_token": TOKEN,
        "model_poll_interval_s": 3600.0,
        "inference_log_flush_s": 0.1,
    }
    return load_settings(**(values | overrides))


def wait_for(check: Callable[[], Any], timeout_s: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"{what} not reached within {timeout_s}s")


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` keyed by (name, sorted labels)."""
    text = client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(client: TestClient, name: str, **labels: str) -> float:
    return samples(client).get((name, tuple(sorted(labels.items()))), 0.0)


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- predict, explain, model ---


def test_predict_one_record_or_a_list_with_the_production_model(
    trained: Trained, stores: Stores
) -> None:
    trained.promote(trained.first)
    expected_run = MlflowClient(trained.settings.mlflow_tracking_uri).get_model_version(
        trained.settings.model_name, trained.first
    )
    with TestClient(create_app(api_settings(trained, stores))) as client:
        one = client.post("/predict", json=trained.records[0])
        many = client.post("/predict", json=trained.records[:20])

    assert one.status_code == 200, one.text
    assert one.json()["model"] == {
        "name": trained.settings.model_name,
        "version": trained.first,
        "run_id": expected_run.run_id,
    }
    assert many.status_code == 200, many.text
    predictions = many.json()["predictions"]
    assert len(predictions) == 20
    assert predictions[0] == one.json()["predictions"][0]
    model = registry.load(trained.settings, registry.production(trained.settings))
    direct = model.predict(raw_frame(trained.records[:20]))
    np.testing.assert_allclose(predictions, direct, rtol=1e-6, atol=0.01)


@pytest.mark.parametrize("which", ["first", "second"])
def test_explain_gives_a_waterfall_in_log_price_space(
    trained: Trained, stores: Stores, which: str
) -> None:
    version = getattr(trained, which)  # both versions: the families may differ (glm, hgb)
    trained.promote(version)
    record = trained.records[1]
    with TestClient(create_app(api_settings(trained, stores))) as client:
        explained = client.post("/explain", json=record)
        predicted = client.post("/predict", json=record).json()["predictions"][0]

    assert explained.status_code == 200, explained.text
    body = explained.json()
    assert body["space"] == "log(price)"
    assert body["model"]["version"] == version
    assert list(body["contributions"]) == list(FEATURES)
    assert any(value != 0 for value in body["contributions"].values())
    assert body["log_prediction"] == pytest.approx(
        body["base_value"] + sum(body["contributions"].values())
    )
    assert body["log_prediction"] == pytest.approx(math.log(body["prediction"]), abs=1e-6)
    assert body["prediction"] == pytest.approx(predicted, abs=0.01)


def test_explain_sheds_when_its_turns_are_busy_and_predict_still_answers(
    trained: Trained, stores: Stores
) -> None:
    """With its one turn taken (held here on the app's own event loop, as a long SHAP call
    would hold it), /explain answers 429 with Retry-After; /predict is not held up; once the
    turn is free /explain answers again, at once (no wait allowed here: a free turn is taken
    without one)."""
    trained.promote(trained.first)
    settings = api_settings(trained, stores, explain_concurrency=1, explain_wait_s=0)
    record = trained.records[1]
    with TestClient(create_app(settings)) as client:
        slots = client.app.state.api.explain_slots
        client.portal.call(slots.acquire)
        try:
            shed = client.post("/explain", json=record)
            predicted = client.post("/predict", json=record)
        finally:
            client.portal.call(slots.release)
        explained = client.post("/explain", json=record)
        counted = metric(
            client, "mlops_api_requests_total", method="POST", route="/explain", status="429"
        )

    assert shed.status_code == 429, shed.text
    assert shed.headers["retry-after"] == "1"
    assert "MLOPS_EXPLAIN_CONCURRENCY" in shed.json()["detail"]
    assert predicted.status_code == 200, predicted.text
    assert explained.status_code == 200, explained.text
    assert explained.json()["contributions"]
    assert counted == 1


def test_model_describes_the_served_version(trained: Trained, stores: Stores) -> None:
    trained.promote(trained.first)
    with TestClient(create_app(api_settings(trained, stores))) as client:
        described = client.get("/model")
        info = samples(client)

    assert described.status_code == 200, described.text
    body = described.json()
    assert body["version"] == trained.first
    assert body["alias"] == "production"
    assert body["family"] in FAMILIES
    assert {"test_mae", "test_rmse", "test_r2", "test_mape"} <= set(body["metrics"])
    assert body["promoted_at"]
    assert body["training_data"]["data_version"] == "batch-1"
    assert body["training_data"]["train_rows"] > 0
    assert body["path"] in ("compiled", "pipeline")
    assert (body["path_reason"] is None) == (body["path"] == "compiled")
    assert body["explain_available"] is True
    labels = {"name": body["name"], "version": body["version"], "run_id": body["run_id"]}
    labels["path"] = body["path"]
    assert info[("mlops_api_model_info", tuple(sorted(labels.items())))] == 1
    assert info[("mlops_api_model_loaded", ())] == 1


# --- requests that are refused ---


def test_bad_requests_get_4xx_naming_the_problem(trained: Trained, stores: Stores) -> None:
    trained.promote(trained.first)
    settings = api_settings(trained, stores, max_batch_records=5)
    missing = {k: v for k, v in EXAMPLE_RECORD.items() if k != "zip_code"}
    with TestClient(create_app(settings)) as client:
        no_zip = client.post("/predict", json=missing)
        bad_type = client.post("/predict", json={**EXAMPLE_RECORD, "bed": "many"})
        a_list = client.post("/predict", json={**EXAMPLE_RECORD, "city": ["Austin"]})
        bad_in_list = client.post("/predict", json=[EXAMPLE_RECORD, {**EXAMPLE_RECORD, "bath": []}])
        too_many = client.post("/predict", json=[EXAMPLE_RECORD] * 6)
        too_many_and_bad = client.post("/predict", json=[{"bed": "x"}] * 6)
        empty = client.post("/predict", json=[])
        extra = client.post("/predict", json={**EXAMPLE_RECORD, "price": 1})
        explain_list = client.post("/explain", json=[EXAMPLE_RECORD])
        at_limit = client.post("/predict", json=[EXAMPLE_RECORD] * 5)

    assert no_zip.status_code == 422
    assert no_zip.json()["detail"][0]["loc"][-1] == "zip_code"
    assert bad_type.status_code == 422
    assert bad_type.json()["detail"][0]["loc"][-1] == "bed"
    assert a_list.status_code == 422
    assert a_list.json()["detail"][0]["loc"][-1] == "city"
    assert bad_in_list.status_code == 422
    assert bad_in_list.json()["detail"][0]["loc"][-2:] == [1, "bath"]
    for response in (too_many, too_many_and_bad):  # counted before any record is validated
        assert response.status_code == 413
        assert "6 records" in response.json()["detail"]
        assert "at most 5" in response.json()["detail"]
    assert empty.status_code == 422
    assert extra.status_code == 422
    assert extra.json()["detail"][0]["loc"][-1] == "price"
    assert explain_list.status_code == 422
    assert at_limit.status_code == 200


def test_the_hook_needs_the_bearer_token(trained: Trained, stores: Stores) -> None:
    trained.promote(trained.first)
    with TestClient(create_app(api_settings(trained, stores))) as client:
        missing = client.post("/hooks/model_update")
        wrong = client.post("/hooks/model_update", headers=auth("wrong-token-456"))
        basic = client.post("/hooks/model_update", headers={"Authorization": "Basic eDp5"})
        right = client.post("/hooks/model_update", headers=auth())

    for response in (missing, wrong, basic):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert "bearer token" in response.json()["detail"]
    assert right.status_code == 200
    assert right.json()["outcome"] == "unchanged"


def test_without_a_production_model_it_starts_and_says_so(
    mlflow_server: MlflowServer, stores: Stores
) -> None:
    name = f"api_none_{uuid.uuid4().hex[:8]}"  # a registered model nobody created
    settings = stores.settings(
        mlflow_tracking_uri=mlflow_server.tracking_uri, model_name=name, api_token=TOKEN
    )
    with TestClient(create_app(settings)) as client:
        health = client.get("/healthz")
        ready = client.get("/readyz")
        predicted = client.post("/predict", json=EXAMPLE_RECORD)
        explained = client.post("/explain", json=EXAMPLE_RECORD)
        described = client.get("/model")
        hook = client.post("/hooks/model_update", headers=auth())
        loaded = metric(client, "mlops_api_model_loaded")

    assert health.status_code == 200
    # Ready: there is nothing to load yet, so the Service must route here (the production DAG's
    # hook reaches the API once the first model is promoted); /predict says why it cannot answer.
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    assert "no model is in production yet" in ready.json()["reason"]
    for response in (predicted, explained, described):
        assert response.status_code == 503
        assert "no model is in production yet" in response.json()["detail"]
        assert name in response.json()["detail"]
    assert hook.status_code == 404
    assert hook.json()["outcome"] == "no_model"
    assert loaded == 0


# --- reloads ---


def test_the_hook_reloads_a_promoted_version(trained: Trained, stores: Stores) -> None:
    trained.promote(trained.first)
    with TestClient(create_app(api_settings(trained, stores))) as client:
        before = client.post("/predict", json=trained.records[0]).json()["model"]["version"]
        trained.promote(trained.second)
        still = client.post("/predict", json=trained.records[0]).json()["model"]["version"]
        hook = client.post("/hooks/model_update", headers=auth())
        after = client.post("/predict", json=trained.records[0]).json()["model"]["version"]
        described = client.get("/model").json()
        ok = metric(client, "mlops_api_model_reloads_total", outcome="ok")

    assert (before, still) == (trained.first, trained.first)  # no poll: the hook is what moved it
    assert hook.status_code == 200, hook.text
    assert hook.json() | {"detail": ""} == {
        "outcome": "loaded",
        "version": trained.second,
        "previous": trained.first,
        "detail": "",
    }
    assert after == trained.second
    assert described["version"] == trained.second
    assert described["training_data"]["data_version"] == "batch-2"
    assert ok == 2  # start-up and the hook


def test_requests_keep_succeeding_while_the_model_is_swapped(
    trained: Trained, stores: Stores
) -> None:
    trained.promote(trained.first)
    answers: list[tuple[int, str | None]] = []
    stop = threading.Event()
    with TestClient(create_app(api_settings(trained, stores))) as client:

        def hammer() -> None:
            while not stop.is_set():
                response = client.post("/predict", json=trained.records[:100])  # thread pool
                answers.append((response.status_code, response.json()["model"]["version"]))

        worker = threading.Thread(target=hammer)
        worker.start()
        try:
            for version in (trained.second, trained.first, trained.second):
                trained.promote(version)
                assert client.post("/hooks/model_update", headers=auth()).status_code == 200
        finally:
            stop.set()
            worker.join()

    assert answers
    assert {status for status, _ in answers} == {200}
    assert {version for _, version in answers} == {trained.first, trained.second}


def test_the_poll_follows_the_alias_without_a_hook(trained: Trained, stores: Stores) -> None:
    trained.promote(trained.first)
    settings = api_settings(trained, stores, model_poll_interval_s=0.3)
    with TestClient(create_app(settings)) as client:
        assert client.get("/model").json()["version"] == trained.first
        trained.promote(trained.second)
        wait_for(
            lambda: client.get("/model").json()["version"] == trained.second,
            what="the poll loading the promoted version",
        )
        answered = client.post("/predict", json=trained.records[:3])

    assert answered.status_code == 200
    assert answered.json()["model"]["version"] == trained.second


def register_unloadable_version(trained: Trained, tmp_path: Path) -> str:
    return support.register_unloadable_copy(trained.settings, trained.first, tmp_path / "copy")


def test_not_ready_while_the_production_model_cannot_be_loaded(
    trained: Trained, stores: Stores, tmp_path: Path
) -> None:
    """A production model exists and this replica does not serve it: not Ready, saying why."""
    broken = register_unloadable_version(trained, tmp_path)
    trained.promote(broken)
    try:
        with TestClient(create_app(api_settings(trained, stores))) as client:
            ready = client.get("/readyz")
            predicted = client.post("/predict", json=trained.records[0])
    finally:
        trained.promote(trained.first)

    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    assert f"version {broken} could not be loaded" in ready.json()["reason"]
    assert predicted.status_code == 503


def test_an_unloadable_version_leaves_the_old_one_serving(
    trained: Trained, stores: Stores, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = register_unloadable_version(trained, tmp_path)
    trained.promote(trained.first)
    settings = api_settings(trained, stores, model_poll_interval_s=0.3)
    try:
        with TestClient(create_app(settings)) as client:
            trained.promote(broken)
            hook = client.post("/hooks/model_update", headers=auth())
            answered = client.post("/predict", json=trained.records[:2])
            wait_for(  # the poll tries too, and fails the same way, counted each time
                lambda: metric(client, "mlops_api_model_reloads_total", outcome="failed") >= 2,
                what="a failed reload from the poll",
            )
            ready = client.get("/readyz")
            described = client.get("/model").json()
    finally:
        trained.promote(trained.first)

    assert hook.status_code == 503
    assert hook.json()["outcome"] == "failed"
    assert hook.json()["version"] == trained.first
    assert f"version {broken} could not be loaded" in hook.json()["detail"]
    assert answered.status_code == 200
    assert answered.json()["model"]["version"] == trained.first
    assert ready.status_code == 200
    assert described["version"] == trained.first
    assert described["not_loaded"]["version"] == broken  # /model says what is not served, why
    assert described["not_loaded"]["reason"]
    failures = [r for r in caplog.records if r.levelname == "ERROR" and r.exc_info]
    assert any(f"loading version {broken} failed" in r.getMessage() for r in failures)


# --- inference logs ---


def logged(url: str) -> list[dict[str, Any]]:
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            query = select(inference_logs).order_by(inference_logs.c.id)
            return [dict(row) for row in conn.execute(query).mappings()]
    finally:
        engine.dispose()


def test_every_prediction_is_logged_in_raw(trained: Trained, stores: Stores) -> None:
    trained.promote(trained.first)
    nul = {**trained.records[4], "street": "12\x0034"}  # PostgreSQL text cannot hold NUL
    with TestClient(create_app(api_settings(trained, stores))) as client:
        one = client.post("/predict", json=trained.records[0]).json()
        three = client.post("/predict", json=trained.records[1:4]).json()
        refused = client.post("/predict", json=nul)
        rows = wait_for(lambda: len(logged(stores.raw_url)) == 4 and logged(stores.raw_url))
        written = metric(client, "mlops_api_inference_log_written_total")
        depth = metric(client, "mlops_api_inference_log_queue_depth")

    assert refused.status_code == 422  # the schema refuses control characters: never logged
    assert refused.json()["detail"][0]["loc"][-1] == "street"
    assert [row["input"] for row in rows] == trained.records[:4]
    prices = one["predictions"] + three["predictions"]
    assert [row["output"]["price"] for row in rows] == prices
    assert {row["model_version"] for row in rows} == {trained.first}
    assert {row["model_name"] for row in rows} == {trained.settings.model_name}
    assert {row["run_id"] for row in rows} == {one["model"]["run_id"]}
    assert all(row["latency_ms"] > 0 for row in rows)
    assert (written, depth) == (4, 0)


def test_shutdown_writes_what_is_still_queued(trained: Trained, stores: Stores) -> None:
    trained.promote(trained.first)
    settings = api_settings(
        trained, stores, inference_log_flush_s=3600.0, inference_log_batch_size=10_000
    )
    with TestClient(create_app(settings)) as client:
        client.post("/predict", json=trained.records[:7])
        queued = metric(client, "mlops_api_inference_log_queue_depth")
        before = len(logged(stores.raw_url))

    assert (queued, before) == (7, 0)  # nothing would be written for an hour...
    assert len(logged(stores.raw_url)) == 7  # ...but shutting down wrote it


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[LocalPostgres]:
    """A PostgreSQL server of this test's own, so the test can stop it."""
    server = LocalPostgres(tmp_path / "pg" / "data", free_port(), durable=False)
    server.init()
    server.start()
    try:
        server.ensure_database("rawdata")
        upgrade(server.url("rawdata"), "raw")
        yield server
    finally:
        server.stop()


def test_predictions_survive_a_database_outage(
    trained: Trained, own_postgres: LocalPostgres
) -> None:
    trained.promote(trained.first)
    url = own_postgres.url("rawdata")
    settings = load_settings(
        **trained.settings.model_dump()
        | {
            "raw_db_url": url,
            "model_poll_interval_s": 3600.0,
            "inference_log_flush_s": 0.05,
            "inference_log_batch_size": 8,
            "inference_log_queue_size": 30,
        }
    )
    # Each record is told apart by its street id, to prove every row is written exactly once.
    records = [{**trained.records[i % 10], "street": str(900_000 + i)} for i in range(45)]
    with TestClient(create_app(settings)) as client:
        assert client.post("/predict", json=records[:5]).status_code == 200
        wait_for(lambda: len(logged(url)) == 5, what="rows before the outage")

        own_postgres.stop()  # the real server goes away
        during = [client.post("/predict", json=records[i : i + 5]) for i in range(5, 45, 5)]
        waiting = metric(client, "mlops_api_inference_log_queue_depth")
        dropped = metric(client, "mlops_api_inference_log_dropped_total")

        own_postgres.start()
        rows = wait_for(lambda: len(logged(url)) >= 35 and logged(url), what="rows after it")
        time.sleep(0.3)  # a duplicate write would land by now
        rows = logged(url)
        written = metric(client, "mlops_api_inference_log_written_total")
        depth = metric(client, "mlops_api_inference_log_queue_depth")

    assert all(response.status_code == 200 for response in during)
    assert (waiting, dropped) == (30, 10)  # 40 rows during the outage, room for 30
    streets = [row["input"]["street"] for row in rows]
    assert len(streets) == len(set(streets)) == 35
    assert streets == [str(900_000 + i) for i in range(35)]  # in order; the last 10 dropped
    assert (written, depth) == (35, 0)


# --- metrics ---


def documented_metrics() -> dict[str, set[str]]:
    """Name → label names, from the table in docs/metrics.md (the contract with the charts)."""
    found = {}
    for line in METRICS_DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`mlops_api_"):
            labels = {part.strip(" `") for part in cells[2].split("(")[0].split(",")}
            found[cells[0].strip("`")] = labels - {"—", ""}
    return found


def test_metrics_are_exactly_the_documented_ones(trained: Trained, stores: Stores) -> None:
    trained.promote(trained.first)
    with TestClient(create_app(api_settings(trained, stores))) as client:
        client.post("/predict", json=trained.records[:3])
        client.get("/nowhere")
        text = client.get("/metrics").text
        after = samples(client)

    families = {f.name: f for f in text_string_to_metric_families(text)}
    documented = documented_metrics()
    assert len(documented) == 11
    exposed = {}
    for family in families.values():
        if not family.name.startswith("mlops_api_"):
            continue
        name = family.name + ("_total" if family.type == "counter" else "")
        exposed[name] = {k for s in family.samples for k in s.labels if k != "le"}
    assert exposed == documented
    request = ("route", "/predict"), ("method", "POST"), ("status", "200")
    assert after[("mlops_api_requests_total", tuple(sorted(request)))] == 1
    unmatched = ("route", "unmatched"), ("method", "GET"), ("status", "404")
    assert after[("mlops_api_requests_total", tuple(sorted(unmatched)))] == 1
    assert after[("mlops_api_predictions_total", ())] == 3
    assert after[("mlops_api_prediction_value_dollars_count", ())] == 3


def test_run_serves_with_several_workers(trained: Trained, stores: Stores, tmp_path: Path) -> None:
    """``server.run`` in its own process with two workers: the factory path and shared metrics."""
    trained.promote(trained.first)
    port = free_port()
    settings = api_settings(trained, stores, api_port=port, api_workers=2)
    env = {
        **os.environ,
        **settings.to_env(),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    script = "from mlops_platform.serving.server import run; from mlops_platform.settings import "
    script += "load_settings; run(load_settings())"
    log_file = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=log_file, stderr=subprocess.STDOUT, env=env
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, timeout_s=90, what="the two-worker server")
        with httpx.Client(base_url=base) as client:
            answers = [client.post("/predict", json=trained.records[:2]) for _ in range(20)]
            text = client.get("/metrics").text
    finally:
        process.terminate()
        process.wait(timeout=30)
        log_file.close()
    assert all(a.status_code == 200 for a in answers)
    predictions = {
        s.name: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "mlops_api_predictions_total"
    }
    assert predictions == {"mlops_api_predictions_total": 40}  # summed over both workers


# --- the helm test check (`mlops check fastapi`, each chart's test pod) ---


def test_the_helm_test_check_passes_before_the_first_model_and_predicts_after(
    mlflow_server: MlflowServer, trained: Trained, stores: Stores
) -> None:
    name = f"api_none_{uuid.uuid4().hex[:8]}"
    empty = stores.settings(
        mlflow_tracking_uri=mlflow_server.tracking_uri, model_name=name, api_token=TOKEN
    )
    with TestClient(create_app(empty)) as client:
        before = checks.fastapi("http://testserver", client)
    assert "no model in production yet" in before
    trained.promote(trained.first)
    with TestClient(create_app(api_settings(trained, stores))) as client:
        after = checks.fastapi("http://testserver", client)
    assert f"model version {trained.first} predicts" in after


def test_the_helm_test_check_fails_while_the_production_model_is_not_served(
    trained: Trained, stores: Stores, tmp_path: Path
) -> None:
    broken = register_unloadable_version(trained, tmp_path)
    trained.promote(broken)
    try:
        with (
            TestClient(create_app(api_settings(trained, stores))) as client,
            pytest.raises(checks.CheckFailed, match="readyz: 503"),
        ):
            checks.fastapi("http://testserver", client)
    finally:
        trained.promote(trained.first)


def test_the_compiled_path_is_verified_again_when_the_background_arrives(
    trained: Trained, stores: Stores
) -> None:
    """A version promoted before its SHAP background exists (promoted by hand, or registered
    before `evaluate` wrote backgrounds): at load the compiled path is verified on the fixed edge
    rows alone; when the background is logged, the next refresh verifies it on those rows too,
    without reloading the model."""
    settings = trained.settings
    model = registry.load(
        settings, registry.ModelVersion(settings.model_name, trained.first, "", {})
    )
    late = registry.register(
        settings,
        model,
        family="late-background",
        example=records_frame(trained.records),
        params={},
        metrics={},
        tags={"data_version": "batch-2"},
    )
    trained.promote(late.version)
    edge = len(edge_rows())
    try:
        with TestClient(create_app(api_settings(trained, stores))) as client:
            before = client.get("/model").json()
            background = modeling.shap_sample(records_frame(trained.records), settings)
            modeling.log_background(registry.client(settings), late.run_id, background)
            hook = client.post("/hooks/model_update", headers=auth()).json()
            after = client.get("/model").json()
            mismatch = metric(client, "mlops_api_compiled_mismatch")
    finally:
        trained.promote(trained.first)
    assert (before["version"], before["explain_available"]) == (late.version, False)
    assert (before["path"], before["path_verified_rows"]) == ("compiled", edge)
    assert hook["outcome"] == "unchanged"
    assert after["explain_available"] is True
    assert after["path"] == "compiled"
    assert after["path_verified_rows"] > edge  # the background rows as well
    assert after["loaded_at"] == before["loaded_at"]  # verified again, not reloaded
    assert mismatch == 0
