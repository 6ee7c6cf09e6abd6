"""Store faults on the shared platform: PostgreSQL, MLflow and S3 die in the middle of real work.

What the scenarios prove, each against the real services of `mlops up`:

- PostgreSQL killed (SIGKILL) in the middle of a batch's COPY into RAW leaves no trace of the
  batch; asked for again it is stored and cleaned once, and a second replay stores nothing.
- PostgreSQL killed while a batch's clean rows and rejects are written, before its
  ``cleaned_batches`` marker commits, leaves nothing of it in CLEAN; the next run cleans it once.
- PostgreSQL killed while the API serves: every /predict answers 200 from memory, and after the
  restart every inference log is in RAW, once.
- MLflow down: the hook answers the pipeline's own ``notify`` that MLflow is unreachable (503) and
  the old model keeps serving; a training run fails naming MLflow and registers nothing.
- S3 down during registration: the run fails, nothing is registered; after a restart a rerun
  registers and records one version.
- PostgreSQL killed just after a candidate version is registered and before its decision row is
  written: after the restart a rerun reuses that version and records it, so every version has its
  ``model_history`` row.

A step is hit "mid-way" at a point each scenario can observe for sure: an uncommitted row of ours
makes the pipeline's own write wait on it (PostgreSQL shows the wait in ``pg_stat_activity``), or
the MLflow database shows the new run or version. Batches come from groups of their own (90x) so
they never take batches the data DAG of group 1 expects.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, Engine, text

from mlops_platform.datasource.client import DataSourceClient
from mlops_platform.local.processes import wait_until
from mlops_platform.pipelines import publish, registry
from mlops_platform.pipelines.data import run_data_pipeline
from mlops_platform.schema import EXAMPLE_RECORD
from mlops_platform.settings import Settings
from mlops_platform.storage.engine import make_engine
from tests.e2e.conftest import mlops
from tests.reliability.conftest import Platform, Scenario

pytestmark = pytest.mark.reliability

INGEST_GROUP, CLEAN_GROUP, FEED_GROUPS = 901, 902, (903, 904, 905, 906)
APPLICATION = "reliability-store-faults"
BLOCKED_ROW = 500  # the RAW row our uncommitted row holds: the COPY waits there, 500 rows in
# MLflow's client retries a refused connection 7 times with backoff (~4 min measured here) before
# it gives up; a CLI run told to give up sooner shows the same failure in seconds.
IMPATIENT_MLFLOW = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}
# A tag MLflow puts on every run of the process (MLFLOW_RUN_CONTEXT): our run is told apart from
# the runs Airflow's modeling DAG starts meanwhile.
RUN_MARKER = "reliability.run"


# --- helpers -------------------------------------------------------------------------------------


def in_group(platform: Platform, group: int) -> Settings:
    return platform.settings.replace(group_number=group)


def scalar(url: str, sql: str, **params: Any) -> Any:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()
    finally:
        engine.dispose()


def raw(platform: Platform, sql: str, **params: Any) -> Any:
    return scalar(platform.settings.raw_url, sql, **params)


def clean(platform: Platform, sql: str, **params: Any) -> Any:
    return scalar(platform.settings.clean_url, sql, **params)


def mlflow_db(platform: Platform, sql: str, **params: Any) -> Any:
    return scalar(str(platform.settings.mlflow_backend_db_url), sql, **params)


@contextmanager
def uncommitted(url: str, sql: str, **params: Any) -> Iterator[Engine]:
    """Our row written and held uncommitted, so a write of the same key waits on us. PostgreSQL
    being killed ends the transaction; otherwise it is rolled back on leaving."""
    engine = make_engine(url)
    conn = engine.connect()
    try:
        conn.begin()
        conn.execute(text(sql), params)
        yield engine
    finally:
        with suppress(Exception):  # the server is gone with our transaction: nothing to roll back
            conn.close()
        engine.dispose()


def waiting_on_lock(engine: Engine, statement: str, application: str = "%") -> int | None:
    """The backend whose ``statement`` (a prefix) waits on a lock, or None; ``application``
    (a LIKE pattern) names whose."""
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query ILIKE :prefix AND application_name LIKE :application "
                "AND pid <> pg_backend_pid()"
            ),
            {"prefix": statement + "%", "application": application},
        ).scalar()


def copied_rows(conn: Connection, pid: int) -> int:
    found = conn.execute(
        text("SELECT tuples_processed FROM pg_stat_progress_copy WHERE pid = :pid"), {"pid": pid}
    ).scalar()
    return int(found or 0)


def next_batch_id(platform: Platform) -> int:
    """The id the next RAW batch gets: we take one value of its sequence, it gets the next."""
    taken = raw(platform, "SELECT nextval(pg_get_serial_sequence('raw_data.batches', 'id'))")
    return int(taken) + 1


def spawn(
    platform: Platform, args: list[str], log: Path, group: int | None = None, **env: str
) -> subprocess.Popen[str]:
    """`mlops ARGS` started in the background, as `Platform.mlops` runs it, output in ``log``."""
    settings = in_group(platform, group) if group else platform.settings
    environment = {
        **os.environ,
        **settings.to_env(),
        "COLUMNS": "200",
        "PGAPPNAME": APPLICATION,  # our run's backends are told apart in pg_stat_activity
        **env,
    }
    environment.pop("MLOPS_API_TOKEN", None)
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mlops_platform.cli", *args],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )


def finish(process: subprocess.Popen[str], timeout_s: float = 600) -> int:
    """Its exit code; a process still running past ``timeout_s`` (or left by a failed test) is
    killed, so no run of ours outlives its scenario."""
    try:
        return process.wait(timeout=timeout_s)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def last_line(log: Path) -> str:
    """The error a failed run ended with (its last ``SomeError: ...`` line), else its last line."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]*(Error|Exception|Shutdown)\b.*: ", line)]
    return (errors or lines or [""])[-1][:200]


def tail(log: Path, lines: int = 25) -> str:
    """The end of a run's output: a wrapped traceback's last lines, joined."""
    return " ".join(log.read_text(errors="replace").splitlines()[-lines:])


def poll(what: str, found: Callable[[], Any], timeout_s: float, every_s: float = 0.02) -> Any:
    """``found()`` polled every ``every_s`` until it is truthy (tighter than wait_until's 0.2 s:
    a kill point may last well under a second); its value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"{what} did not happen within {timeout_s:.0f} s")


def restarted(platform: Platform) -> float:
    """`mlops up --no-pipeline`; its seconds, rounded for the report."""
    return round(platform.restart(), 1)


def batch_accounted(platform: Platform, batch_id: int) -> dict[str, int]:
    """A batch's rows in RAW and where they went in CLEAN, CLEAN read in one statement (one
    snapshot): an Airflow clean committing meanwhile is seen whole or not at all."""
    rows = raw(platform, "SELECT count(*) FROM raw_data.listings WHERE batch_id = :b", b=batch_id)
    engine = make_engine(platform.settings.clean_url)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM clean_data.listings WHERE batch_id = :b), "
                    "(SELECT count(*) FROM clean_data.rejected WHERE batch_id = :b), "
                    "(SELECT count(*) FROM clean_data.repairs WHERE batch_id = :b), "
                    "(SELECT count(*) FROM clean_data.cleaned_batches WHERE batch_id = :b)"
                ),
                {"b": batch_id},
            ).one()
    finally:
        engine.dispose()
    names = ("clean_rows", "rejected", "repairs", "markers")
    return {"raw_rows": rows, **dict(zip(names, map(int, found), strict=True))}


def max_version(platform: Platform) -> int:
    found = mlflow_db(
        platform,
        "SELECT max(version) FROM model_versions WHERE name = :name",
        name=platform.settings.model_name,
    )
    return int(found or 0)


def run_began(platform: Platform, marker: str) -> bool:
    """Whether the MLflow run tagged ``marker`` (:data:`RUN_MARKER`) exists yet."""
    found = mlflow_db(
        platform, "SELECT count(*) FROM tags WHERE key = :k AND value = :v", k=RUN_MARKER, v=marker
    )
    return int(found) > 0


def versions_for(platform: Platform, label: str) -> list[int]:
    """Versions registered for data version ``label`` (their ``data_version`` tag)."""
    found = mlflow_db(
        platform,
        "SELECT array_agg(version::int ORDER BY version) FROM model_version_tags "
        "WHERE name = :n AND key = 'data_version' AND value = :label",
        n=platform.settings.model_name,
        label=label,
    )
    return list(found or [])


def data_label(platform: Platform) -> str:
    return f"batch-{clean(platform, 'SELECT max(batch_id) FROM clean_data.listings')}"


def decided_label(output: str) -> str:
    """The data version a model run decided on, in its own words ("decision for batch-N: ...").
    Not CLEAN's newest batch read beforehand: Airflow's data DAG may land a newer one first."""
    found = re.findall(r"decision for (batch-\d+):", output)
    assert found, f"the model run named no data version:\n{output[-3000:]}"
    return found[-1]


def history_row(platform: Platform, label: str) -> dict[str, Any] | None:
    engine = make_engine(platform.settings.clean_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT * FROM clean_data.model_history WHERE data_version = :l"), {"l": label}
            )
            found = row.mappings().first()
            return dict(found) if found else None
    finally:
        engine.dispose()


def feed_until_retrain(platform: Platform) -> int:
    """Batches of our own groups through the data pipeline until the modeling pipeline will
    train: new clean rows at least the share of the production model's data that asks for it,
    and a data version not decided yet. The batches fed."""
    settings = platform.settings
    production = registry.production(settings)
    assert production is not None, "the platform has no model in production"
    seen = int(production.tags["max_batch_id"])
    fed = 0
    for group in FEED_GROUPS:
        while True:
            reference = clean(
                platform, "SELECT count(*) FROM clean_data.listings WHERE batch_id <= :s", s=seen
            )
            new = clean(
                platform, "SELECT count(*) FROM clean_data.listings WHERE batch_id > :s", s=seen
            )
            enough = new >= max(reference * settings.retrain_new_rows_ratio, settings.min_new_rows)
            if enough and history_row(platform, data_label(platform)) is None:
                return fed
            if run_data_pipeline(in_group(platform, group))["exhausted"]:
                break
            fed += 1
    raise AssertionError(f"{fed} batches fed and the modeling pipeline would still not train")


def metric(platform: Platform, name: str) -> float:
    with platform.api() as api:
        lines = api.get("/metrics").text.splitlines()
    return next((float(line.split()[-1]) for line in lines if line.startswith(name + " ")), 0.0)


# --- PostgreSQL killed during ingest -------------------------------------------------------------


def test_postgres_killed_during_ingest_leaves_no_partial_batch(
    platform: Platform, scenario: Scenario, tmp_path: Path
) -> None:
    settings = in_group(platform, INGEST_GROUP)
    batch_id = next_batch_id(platform)
    log = tmp_path / "ingest.log"
    # Rows of the next few ids: an Airflow ingest taking the first id waits too, and ours the next.
    blocker = (
        "INSERT INTO raw_data.listings (batch_id, row_number, row_hash) "
        "SELECT id, :r, 'held' FROM generate_series(:b, :b + 3) AS id"
    )
    process: subprocess.Popen[str] | None = None
    try:
        with uncommitted(settings.raw_url, blocker, b=batch_id, r=BLOCKED_ROW) as engine:
            process = spawn(platform, ["pipeline", "run", "data"], log, group=INGEST_GROUP)
            pid = poll(
                "the ingest's COPY to wait on our row",
                lambda: waiting_on_lock(engine, "COPY raw_data.listings", APPLICATION),
                120,
                every_s=0.1,
            )
            with engine.connect() as conn:
                in_flight = copied_rows(conn, pid)
            platform.kill("postgres")
        code = finish(process)
    finally:
        seconds = restarted(platform)
        if process is not None:
            code = finish(process)
    assert code != 0, log.read_text()
    failure = last_line(log)
    batches = raw(
        platform, "SELECT count(*) FROM raw_data.batches WHERE group_number = :g", g=INGEST_GROUP
    )
    rows_left = raw(
        platform,
        "SELECT count(*) FROM raw_data.listings WHERE batch_id BETWEEN :b AND :b + 3",
        b=batch_id,
    )
    assert (batches, rows_left) == (0, 0), "a partial batch survived the crash"

    # The source serves "the next batch": the one lost with the crash is asked for again.
    with DataSourceClient.from_settings(settings) as source:
        source.restart(INGEST_GROUP, settings.day)
        first = mlops(["pipeline", "run", "data"], settings)
        source.restart(INGEST_GROUP, settings.day)
        replay = mlops(["pipeline", "run", "data"], settings)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "stored in RAW" in first.stdout, first.stdout
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "already in RAW" in replay.stdout, replay.stdout
    stored = raw(
        platform,
        "SELECT array_agg(id) FROM raw_data.batches WHERE group_number = :g AND batch_number = 1",
        g=INGEST_GROUP,
    )
    assert len(stored) == 1, f"batch 1 of group {INGEST_GROUP} stored as {stored}"
    after = batch_accounted(platform, stored[0])
    rows = raw(platform, "SELECT row_count FROM raw_data.batches WHERE id = :b", b=stored[0])
    assert after["raw_rows"] == rows == after["clean_rows"] + after["rejected"]
    assert after["markers"] == 1
    scenario.report(
        f"killed mid-COPY ({in_flight} of {rows} rows sent, held at row {BLOCKED_ROW}): 0 rows, 0 "
        f"batch rows left in "
        f"RAW; restart {seconds} s; asked again: stored once ({after['raw_rows']} rows → "
        f"{after['clean_rows']} clean + {after['rejected']} rejected), replay stored nothing",
        rows_in_flight=in_flight,
        batch_rows=rows,
        rows_left_after_crash=rows_left,
        batch_rows_left_after_crash=batches,
        seconds_to_recover=seconds,
        stored_again=after["raw_rows"],
        cleaned=after["clean_rows"],
        rejected=after["rejected"],
        failure=failure,
    )


# --- PostgreSQL killed during clean --------------------------------------------------------------


def test_postgres_killed_during_clean_leaves_no_half_cleaned_batch(
    platform: Platform, scenario: Scenario, tmp_path: Path
) -> None:
    settings = in_group(platform, CLEAN_GROUP)
    batch_id = next_batch_id(platform)
    log = tmp_path / "clean.log"
    marker = (
        "INSERT INTO clean_data.cleaned_batches (batch_id, rows_read, cleaned, rejected) "
        "VALUES (:b, 0, 0, 0)"
    )
    process: subprocess.Popen[str] | None = None
    try:
        with uncommitted(settings.clean_url, marker, b=batch_id) as engine:
            process = spawn(platform, ["pipeline", "run", "data"], log, group=CLEAN_GROUP)
            pid = poll(
                "a clean's marker to wait on ours",
                lambda: waiting_on_lock(engine, "INSERT INTO clean_data.cleaned_batches"),
                120,
                every_s=0.1,
            )
            with engine.connect() as conn:
                whose = conn.execute(
                    text("SELECT application_name FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
                ).scalar()
            platform.kill("postgres")
        code = finish(process)
    finally:
        seconds = restarted(platform)
        if process is not None:
            code = finish(process)
    assert code != 0, log.read_text()
    failure = last_line(log)
    left = batch_accounted(platform, batch_id)
    assert left["raw_rows"] > 0, "the batch was committed to RAW before its clean began"
    # The clean that waited may be an Airflow run's; its task may also clean the batch again as
    # soon as PostgreSQL is back. Either way CLEAN holds all of the batch or nothing of it.
    written = (left["clean_rows"], left["rejected"], left["repairs"], left["markers"])
    whole = left["markers"] == 1 and left["clean_rows"] + left["rejected"] == left["raw_rows"]
    assert written == (0, 0, 0, 0) or whole, f"half-cleaned batch after the crash: {left}"

    again = mlops(["pipeline", "run", "data"], settings)
    assert again.returncode == 0, again.stdout + again.stderr
    after = batch_accounted(platform, batch_id)
    assert after["markers"] == 1
    assert after["clean_rows"] + after["rejected"] == after["raw_rows"] == left["raw_rows"]
    read = clean(
        platform, "SELECT rows_read FROM clean_data.cleaned_batches WHERE batch_id = :b", b=batch_id
    )
    assert read == after["raw_rows"]
    scenario.report(
        f"killed with a {left['raw_rows']}-row batch's clean rows and rejects written, marker "
        f"pending ({'our CLI run' if whose == APPLICATION else 'an Airflow run'}): after the "
        f"restart ({seconds} s) CLEAN held {'all' if whole else 'none'} of it; cleaned once in "
        f"the end ({after['clean_rows']} clean + {after['rejected']} rejected)",
        batch_rows=left["raw_rows"],
        clean_rows_after_crash=left["clean_rows"],
        rejected_after_crash=left["rejected"],
        cleaned_by_a_retry_at_restart=whole,
        seconds_to_recover=seconds,
        cleaned=after["clean_rows"],
        rejected=after["rejected"],
        failure=failure,
    )


# --- PostgreSQL killed while the API serves ------------------------------------------------------

BEFORE, DURING, AFTER = 20, 100, 20
STREET = 880_000_000  # our requests' streets: their logs are told apart from any other's


def test_postgres_killed_while_the_api_serves_loses_no_inference_log(
    platform: Platform, scenario: Scenario
) -> None:
    records = [
        {**EXAMPLE_RECORD, "street": str(STREET + i)} for i in range(BEFORE + DURING + AFTER)
    ]
    streets = [record["street"] for record in records]
    dropped = metric(platform, "mlops_api_inference_log_dropped_total")

    def logged() -> int:
        try:
            return int(
                raw(
                    platform,
                    "SELECT count(*) FROM raw_data.inference_logs "
                    "WHERE input->>'street' = ANY(:streets)",
                    streets=streets,
                )
            )
        except Exception:  # RAW not back yet
            return -1

    def predict(api: httpx.Client, batch: list[dict[str, Any]]) -> list[int]:
        return [api.post("/predict", json=record).status_code for record in batch]

    with platform.api() as api:
        before = predict(api, records[:BEFORE])
        wait_until("the first logs in RAW", lambda: logged() == BEFORE, 60)
        try:
            platform.kill("postgres")
            during = predict(api, records[BEFORE : BEFORE + DURING])
            queued = metric(platform, "mlops_api_inference_log_queue_depth")
        finally:
            seconds = restarted(platform)
        after = predict(api, records[BEFORE + DURING :])
    answered = before + during + after
    assert answered == [200] * len(records), f"status codes: {sorted(set(answered))}"
    wait_until("every inference log in RAW", lambda: logged() >= len(records), 180)
    distinct = raw(
        platform,
        "SELECT count(DISTINCT input->>'street') FROM raw_data.inference_logs "
        "WHERE input->>'street' = ANY(:streets)",
        streets=streets,
    )
    lost = metric(platform, "mlops_api_inference_log_dropped_total") - dropped
    assert (logged(), distinct, lost) == (len(records), len(records), 0)
    scenario.report(
        f"{len(records)} predictions, {DURING} with PostgreSQL down: all 200; {queued:.0f} logs "
        f"queued during the outage; restart {seconds} s; {len(records)} logs in RAW, once each, "
        f"0 dropped",
        requests=len(records),
        requests_during_outage=DURING,
        errors=sum(code != 200 for code in answered),
        logs_queued_during_outage=int(queued),
        logs_written=logged(),
        logs_dropped=int(lost),
        seconds_to_recover=seconds,
    )


# --- MLflow down ---------------------------------------------------------------------------------


def test_mlflow_down_during_the_hook_keeps_the_old_model_serving(
    platform: Platform, scenario: Scenario
) -> None:
    settings = platform.settings.replace(api_token=platform.secrets["api_token"])
    with platform.api() as api:
        serving = api.get("/model").json()["version"]
    try:
        platform.kill("mlflow")
        started = time.monotonic()
        with pytest.raises(publish.PublishError) as refused:
            publish.notify(settings)  # what the pipeline calls, with its own timeout
        answered_s = round(time.monotonic() - started, 1)
        with platform.api() as api:
            predicted = api.post("/predict", json=EXAMPLE_RECORD)
            model = api.get("/model").json()
    finally:
        seconds = restarted(platform)
    message = str(refused.value)
    assert "HTTP 503" in message, message
    assert "unreachable" in message, message
    assert predicted.status_code == 200
    assert model["version"] == serving
    answer = publish.notify(settings)
    assert (answer["outcome"], answer["version"]) == ("unchanged", serving)
    scenario.report(
        f"MLflow down: the hook answered 503 'unreachable' to notify in {answered_s} s, "
        f"v{serving} kept serving (/predict 200); restart {seconds} s, hook 'unchanged'",
        hook_seconds=answered_s,
        version=serving,
        seconds_to_recover=seconds,
    )


def began_or_ended(platform: Platform, marker: str, process: subprocess.Popen[str]) -> bool:
    """Wait until our run's MLflow run exists (True) or our process ended without one (False:
    Airflow's modeling DAG decided the data first, and ours had nothing to train)."""

    def settled() -> tuple[bool] | None:
        if run_began(platform, marker):
            return (True,)
        return (run_began(platform, marker),) if process.poll() is not None else None

    return poll("our candidate's MLflow run", settled, 600, every_s=0.05)[0]


def kill_once_the_run_began(platform: Platform, service: str, log: Path) -> tuple[int, float, int]:
    """`mlops pipeline run model` (MLflow's client impatient) with ``service`` killed once its
    own candidate's MLflow run exists (not one an Airflow run started meanwhile); the run ends
    with it down. When Airflow decided the data first, more batches are fed and the run starts
    again (three times at most). Its exit code, the seconds the restart took, and the batches
    fed for those retries."""
    fed = 0
    process: subprocess.Popen[str] | None = None
    try:
        for _ in range(3):
            marker = f"{service}-{time.time_ns()}"
            context = json.dumps({RUN_MARKER: marker})
            process = spawn(
                platform,
                ["pipeline", "run", "model"],
                log,
                **IMPATIENT_MLFLOW,
                MLFLOW_RUN_CONTEXT=context,
            )
            if began_or_ended(platform, marker, process):
                break
            finish(process)
            fed += feed_until_retrain(platform)
        else:
            raise AssertionError("Airflow decided the data first three times:\n" + tail(log))
        platform.kill(service)
        code = finish(process)
    finally:
        seconds = restarted(platform)
        if process is not None:
            code = finish(process)
    return code, seconds, fed


def test_mlflow_down_during_training_fails_clearly_and_records_nothing(
    platform: Platform, scenario: Scenario, tmp_path: Path
) -> None:
    fed = feed_until_retrain(platform)
    log = tmp_path / "model.log"
    code, seconds, more = kill_once_the_run_began(platform, "mlflow", log)
    fed += more
    failure = last_line(log)
    assert code != 0, log.read_text()
    label = decided_label(log.read_text())
    assert settings_mlflow(platform) in tail(log), tail(log)
    assert versions_for(platform, label) == [], "a version was registered with MLflow down"
    assert history_row(platform, label) is None, "a decision was recorded for a failed run"
    scenario.report(
        f"MLflow killed once the candidate's run began: the run failed naming MLflow, 0 versions "
        f"registered, 0 decisions recorded for {label}; restart {seconds} s",
        batches_fed=fed,
        versions_registered=0,
        decisions_recorded=0,
        seconds_to_recover=seconds,
        failure=failure,
    )


def settings_mlflow(platform: Platform) -> str:
    """MLflow's address as its errors name it (host:port)."""
    return platform.settings.mlflow_tracking_uri.split("://", 1)[-1].rstrip("/")


# --- S3 down during registration -----------------------------------------------------------------


def test_s3_down_during_registration_registers_nothing(
    platform: Platform, scenario: Scenario, tmp_path: Path
) -> None:
    fed = feed_until_retrain(platform)
    log = tmp_path / "model.log"
    code, seconds, more = kill_once_the_run_began(platform, "s3", log)
    fed += more
    failure = last_line(log)
    assert code != 0, log.read_text()
    label = decided_label(log.read_text())
    assert versions_for(platform, label) == [], "a version was registered with S3 down"
    assert history_row(platform, label) is None

    started = time.monotonic()
    rerun = mlops(["pipeline", "run", "model"], platform.settings)
    rerun_s = round(time.monotonic() - started, 1)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    # This scenario took 333-359 s in CI runs against ~40 s alone, cause unseen; one suspect is a
    # run of Airflow's holding the data's training lock. The rerun logs such a wait; reported.
    waited = "another run is training this data" in rerun.stderr
    after = ", after waiting for another run" if waited else ""
    # The rerun decides the newest data: the killed run's, or a batch Airflow's data DAG landed
    # since (right after `mlops up` it often does).
    relabel = decided_label(rerun.stderr)
    decided = history_row(platform, relabel)
    assert decided is not None, f"no decision recorded for {relabel}; the rerun:\n{rerun.stdout}"
    assert decided["outcome"] in ("promoted", "rejected"), decided
    # Airflow's modeling DAG may register versions of other data meanwhile: only ours is counted.
    ours = versions_for(platform, relabel)
    assert ours == [int(decided["candidate_version"])], f"{relabel} registered as {ours}"
    scenario.report(
        f"S3 killed once the candidate's run of {label} began: the run failed, 0 versions "
        f"registered; restart {seconds} s; the rerun ({rerun_s} s{after}) decided {relabel}, "
        f"registered v{decided['candidate_version']} and recorded it ({decided['outcome']})",
        batches_fed=fed,
        versions_registered_during_outage=0,
        versions_registered_by_rerun=len(ours),
        seconds_to_recover=seconds,
        rerun_seconds=rerun_s,
        rerun_waited_for_another_run=waited,
        rerun_outcome=decided["outcome"],
        failure=failure,
    )


# --- PostgreSQL killed during a training run -----------------------------------------------------


def test_postgres_killed_after_registration_leaves_no_unrecorded_version(
    platform: Platform, scenario: Scenario, tmp_path: Path
) -> None:
    fed = feed_until_retrain(platform)
    label = data_label(platform)
    versions = max_version(platform)
    log = tmp_path / "model.log"
    process: subprocess.Popen[str] | None = None
    try:
        process = spawn(platform, ["pipeline", "run", "model"], log)
        poll("the candidate's version", lambda: max_version(platform) > versions, 600)
        tagged = mlflow_db(
            platform,
            "SELECT count(*) FROM model_version_tags WHERE name = :n AND version = :v",
            n=platform.settings.model_name,
            v=versions + 1,
        )
        platform.kill("postgres")
        killed_at = time.monotonic()
    finally:
        seconds = restarted(platform)
        if process is not None:
            code = finish(process)
    run_s = round(time.monotonic() - killed_at, 1)
    platform.mlops("pipeline", "run", "model")
    decided = history_row(platform, label)
    assert decided is not None, f"no decision recorded for {label}"
    assert decided["outcome"] in ("promoted", "rejected"), decided
    ours = versions_for(platform, label)
    assert ours == [versions + 1], f"{label} registered as {ours}"
    assert decided["candidate_version"] == str(versions + 1)
    scenario.report(
        f"PostgreSQL killed right after v{versions + 1} was registered: the run "
        f"{'went on after the restart' if code == 0 else 'failed (' + last_line(log)[:80] + ')'}; "
        f"restart {seconds} s; after a rerun {label} has 1 version, v{versions + 1}, and its "
        f"decision ({decided['outcome']}): 0 unrecorded",
        batches_fed=fed,
        interrupted_run_exit=code,
        interrupted_run_seconds_after_kill=run_s,
        version_tags_before_kill=tagged,
        versions_registered=len(ours),
        unrecorded_versions=0,
        seconds_to_recover=seconds,
        rerun_outcome=decided["outcome"],
    )
