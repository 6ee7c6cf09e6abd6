"""Locust users for the Load scenario (tests/reliability/test_load.py), run headless apart.

Each user loops without pause over the platform's public surface, weighted as a busy day would
be: ``/predict`` with one record and with 100, ``/explain`` for one listing, and the UI's health.
A request counts as failed unless it answers 200 with the body a client relies on (one price per
record sent, a SHAP waterfall, "ok"), so locust's failure count is the scenario's error count.
An ``/explain`` answered 429 with Retry-After (no explanation turn came free in time, as the API
is built to shed them) is counted apart, as ``/explain shed``.

The test passes the inputs through the environment: ``LOAD_RECORDS`` (a JSON file of valid
listing records, at least 100) and ``LOAD_UI_URL`` (the Streamlit server's base URL); ``--host``
is the API. Bodies are encoded once here, so locust's own CPU goes to sending, not to JSON.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

from locust import FastHttpUser, constant, task

BATCH = 100  # records in one multi-record /predict
_RECORDS: list[dict[str, Any]] = json.loads(Path(os.environ["LOAD_RECORDS"]).read_text())
_UI_HEALTH = os.environ["LOAD_UI_URL"].rstrip("/") + "/_stcore/health"
_ONE = [json.dumps(record).encode() for record in _RECORDS]
_MANY = [
    json.dumps((_RECORDS * 2)[start : start + BATCH]).encode()
    for start in range(0, len(_RECORDS), 7)
]
_JSON = {"Content-Type": "application/json"}

# Request names: the test reads locust's stats by them and knows how many rows each one logs.
PREDICT_ONE = "/predict 1 record"
PREDICT_MANY = f"/predict {BATCH} records"
EXPLAIN = "/explain"
EXPLAIN_SHED = "/explain shed"
UI_HEALTH = "ui /_stcore/health"


class PlatformUser(FastHttpUser):
    """One client hammering the API and the UI (no think time: the point is the load)."""

    wait_time = constant(0)

    def on_start(self) -> None:
        offset = id(self)  # users start at different records
        self._one = itertools.islice(itertools.cycle(_ONE), offset % len(_ONE), None)
        self._many = itertools.islice(itertools.cycle(_MANY), offset % len(_MANY), None)

    def _predict(self, body: bytes, count: int, name: str) -> None:
        with self.client.post(
            "/predict", data=body, headers=_JSON, name=name, catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
            elif len(response.json().get("predictions", [])) != count:
                response.failure(f"expected {count} predictions: {response.text[:200]}")

    @task(10)
    def predict_one(self) -> None:
        self._predict(next(self._one), 1, PREDICT_ONE)

    @task(3)
    def predict_many(self) -> None:
        self._predict(next(self._many), BATCH, PREDICT_MANY)

    @task(2)
    def explain(self) -> None:
        with self.client.post(
            "/explain", data=next(self._one), headers=_JSON, name=EXPLAIN, catch_response=True
        ) as response:
            if response.status_code == 429 and response.headers.get("Retry-After"):
                response.request_meta["name"] = EXPLAIN_SHED
                response.success()
            elif response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
            elif not response.json().get("contributions"):
                response.failure(f"no contributions: {response.text[:200]}")

    @task(1)
    def ui_health(self) -> None:
        with self.client.get(_UI_HEALTH, name=UI_HEALTH, catch_response=True) as response:
            if response.status_code != 200 or response.text.strip() != "ok":
                response.failure(f"{response.status_code}: {response.text[:200]}")
