"""Load: the platform under 64 concurrent users for 60 s while its data and modeling DAGs run.

Locust (headless, in a subprocess: it monkeypatches the process with gevent) ramps to 64 users
against ``/predict`` with one record and with 100, ``/explain`` and the UI's health, while
Airflow runs ``data_pipeline`` and ``modeling_pipeline``, triggered just before through its REST
API. What must hold: no request fails (any answer but a correct 200 counts as failed, except an
``/explain`` shed with 429 and Retry-After when no explanation turn came free: counted apart),
some explanations are computed, and every prediction served is logged: the rows the API wrote
into ``raw_data.inference_logs`` during the load equal the records of the ``/predict`` requests
served (one row per record; ``/explain`` logs none). Throughput, latency per endpoint and the DAG
runs' states are recorded as figures.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from mlops_platform.datasource.simulator import SimulatorConfig, generate_batch
from mlops_platform.local import airflow
from mlops_platform.local.processes import StartError, wait_until
from mlops_platform.schema import FEATURES, ListingFeatures
from tests.reliability.conftest import Platform, Scenario

pytestmark = pytest.mark.reliability

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
USERS = 64
RAMP_S = 20  # all 64 users after 20 s, then 40 s at full load
RUN_S = 60
DAGS = ("data_pipeline", "modeling_pipeline")
# The locustfile's request names and the inference-log rows one request of each writes. (Not
# imported from it: importing locust would monkeypatch this process with gevent.)
ROWS_PER_REQUEST = {"/predict 1 record": 1, "/predict 100 records": 100, "/explain": 0}
UI_HEALTH = "ui /_stcore/health"
EXPLAIN_SHED = "/explain shed"  # 429 with Retry-After (MLOPS_EXPLAIN_CONCURRENCY); logs nothing


def listing_records(count: int = 300) -> list[dict[str, Any]]:
    """Records a client would send: simulator listings that pass the request schema."""
    config = SimulatorConfig(batches=3, batch_size=400, seed=23, drift_at=3)
    records = []
    for raw in generate_batch(config, 1, "Wednesday", 2):
        try:
            features = ListingFeatures(**{k: raw.get(k) for k in FEATURES})
        except ValueError:
            continue
        records.append(features.model_dump(mode="json"))
    assert len(records) >= 100, f"only {len(records)} valid simulator records"
    return records[:count]


def trigger(platform: Platform, headers: dict[str, str], dag_id: str) -> str:
    """A manual run of ``dag_id`` through Airflow's REST API; its run id."""
    response = httpx.post(
        f"{airflow.base_url(platform.settings)}/api/v2/dags/{dag_id}/dagRuns",
        json={"logical_date": datetime.now(UTC).isoformat()},
        headers=headers,
        timeout=60,
    )
    assert response.status_code == 200, f"triggering {dag_id}: {response.text}"
    return str(response.json()["dag_run_id"])


def run_state(platform: Platform, headers: dict[str, str], dag_id: str, run_id: str) -> str:
    response = httpx.get(
        f"{airflow.base_url(platform.settings)}/api/v2/dags/{dag_id}/dagRuns/{run_id}",
        headers=headers,
        timeout=60,
    )
    response.raise_for_status()
    return str(response.json()["state"])


def logged_since(platform: Platform, since: datetime) -> int:
    with platform.raw().connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM raw_data.inference_logs WHERE logged_at >= :since"),
                {"since": since},
            ).scalar_one()
        )


def api_metric(platform: Platform, name: str) -> float:
    """One unlabelled sample of the API's ``/metrics`` (0 when absent)."""
    with platform.api() as api:
        for line in api.get("/metrics").text.splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
    return 0.0


def locust(platform: Platform, folder: Path) -> dict[str, dict[str, str]]:
    """Run the locustfile headless; locust's final stats, one row per request name."""
    records = folder / "records.json"
    records.write_text(json.dumps(listing_records()))
    environment = {
        **os.environ,
        "LOAD_RECORDS": str(records),
        "LOAD_UI_URL": f"http://127.0.0.1:{platform.settings.ui_port}",
    }
    command = [
        *(sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"),
        *("--host", platform.settings.api_url),
        *("-u", str(USERS), "-r", str(USERS / RAMP_S), "-t", f"{RUN_S}s"),
        # Users finish the request in flight when time is up, so every request the API served
        # (and logged) is in locust's counts.
        *("--stop-timeout", "60", "--csv", str(folder / "load"), "--only-summary"),
        *("--exit-code-on-error", "0"),  # failures are asserted from the stats, with their text
    ]
    result = subprocess.run(
        command, env=environment, capture_output=True, text=True, timeout=RUN_S + 240, check=False
    )
    stats = folder / "load_stats.csv"
    output = f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
    assert result.returncode == 0, f"locust exited {result.returncode}:\n{output}"
    assert stats.is_file(), f"locust wrote no stats:\n{output}"
    with stats.open() as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


def failures(folder: Path) -> list[str]:
    """Locust's failure table: 'N x name: error' per distinct failure."""
    path = folder / "load_failures.csv"
    if not path.is_file():
        return []
    with path.open() as handle:
        return [f"{r['Occurrences']} x {r['Name']}: {r['Error']}" for r in csv.DictReader(handle)]


def test_load_64_users_while_the_dags_run(
    platform: Platform, scenario: Scenario, tmp_path: Path
) -> None:
    headers = {"Authorization": f"Bearer {airflow.token(platform.settings, timeout_s=60)}"}
    dropped_before = api_metric(platform, "mlops_api_inference_log_dropped_total")
    started = datetime.now(UTC)  # logged_at of every row this load writes is at or after it
    runs = {dag_id: trigger(platform, headers, dag_id) for dag_id in DAGS}
    # The load starts once Airflow has started both runs (a queued run is not yet running).
    waited = time.monotonic()
    wait_until(
        "the triggered DAG runs to start",
        lambda: all(run_state(platform, headers, d, r) != "queued" for d, r in runs.items()),
        300,
    )
    dags_start_s = time.monotonic() - waited
    stats = locust(platform, tmp_path)

    named = {*ROWS_PER_REQUEST, UI_HEALTH, "Aggregated"}
    assert named <= set(stats) <= {*named, EXPLAIN_SHED}, sorted(stats)
    shed = int(stats[EXPLAIN_SHED]["Request Count"]) if EXPLAIN_SHED in stats else 0
    total = stats["Aggregated"]
    requests, errors = int(total["Request Count"]), int(total["Failure Count"])
    served = {
        name: int(stats[name]["Request Count"]) - int(stats[name]["Failure Count"])
        for name in ROWS_PER_REQUEST
    }
    expected = sum(served[name] * rows for name, rows in ROWS_PER_REQUEST.items())

    # The API writes its queue at least every inference_log_flush_s: poll until every row is in,
    # or its queue is empty (what is not in RAW then never will be).
    def flushed() -> bool:
        return logged_since(platform, started) >= expected or (
            api_metric(platform, "mlops_api_inference_log_queue_depth") == 0
        )

    flushed_at = time.monotonic()
    with contextlib.suppress(StartError):  # then the counts below say what is missing
        wait_until("the API to write its inference logs", flushed, 120)
    logs_s = time.monotonic() - flushed_at
    logged = logged_since(platform, started)
    dropped = api_metric(platform, "mlops_api_inference_log_dropped_total") - dropped_before
    states = {dag_id: run_state(platform, headers, dag_id, run) for dag_id, run in runs.items()}

    per_endpoint = {
        name: {
            "requests": int(row["Request Count"]),
            "errors": int(row["Failure Count"]),
            "p50_ms": float(row["50%"]),
            "p99_ms": float(row["99%"]),
            "rps": round(float(row["Requests/s"]), 1),
        }
        for name, row in stats.items()
        if name != "Aggregated"
    }
    p50, p99, rps = float(total["50%"]), float(total["99%"]), float(total["Requests/s"])
    scenario.report(
        f"{requests} requests in {RUN_S}s at {USERS} users ({rps:.0f}/s), {errors} errors, "
        f"p50 {p50:.0f} ms p99 {p99:.0f} ms, {served['/explain']} explanations and {shed} shed, "
        f"{logged}/{expected} inference logs written; "
        + ", ".join(f"{dag_id} {state}" for dag_id, state in states.items()),
        users=USERS,
        ramp_s=RAMP_S,
        run_s=RUN_S,
        requests=requests,
        errors=errors,
        explanations=served["/explain"],
        explanations_shed=shed,
        requests_per_s=round(rps, 1),
        p50_ms=p50,
        p99_ms=p99,
        endpoints=per_endpoint,
        logs_expected=expected,
        logs_written=logged,
        logs_dropped=dropped,
        seconds_to_flush_logs=round(logs_s, 1),
        dag_runs=states,
        seconds_for_dag_runs_to_start=round(dags_start_s, 1),
    )
    assert errors == 0, "\n".join(failures(tmp_path))
    assert served["/predict 1 record"] > 0, "no single-record prediction was served"
    assert served["/predict 100 records"] > 0, "no 100-record prediction was served"
    assert served["/explain"] > 0, f"every /explain was shed ({shed})"
    assert logged == expected, f"{logged} inference logs written for {expected} predictions served"
    assert dropped == 0
    assert "failed" not in states.values(), states
