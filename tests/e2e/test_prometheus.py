"""A real Prometheus, started by the local platform, scrapes the real inference API and the loop
exporter: after a data batch and a decision the series say what the stores and the registry say,
and once the data source stops, the freshness alert (MlopsLoopNoNewData, the chart's rule) goes
pending/firing.

The platform here is the part of `mlops up` Prometheus watches (no UI, no Airflow: the first
model is put in production the way `mlops up` does it, by ``ensure_production_model``), on free
ports in a fresh folder, as every test of this folder does. Scrapes and rule evaluations every
second, and a data interval of 15 s, so the alert is due 30 s after the newest batch.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from mlops_platform.local import platform
from mlops_platform.local.bootstrap import ensure_production_model
from mlops_platform.local.processes import wait_until
from mlops_platform.pipelines import registry
from mlops_platform.pipelines.data import run_data_pipeline
from mlops_platform.settings import Settings
from mlops_platform.storage.engine import make_engine
from mlops_platform.storage.tables import batches
from tests.e2e.conftest import fresh_settings, mlops, processes_of
from tests.support import installed

pytestmark = pytest.mark.integration

SERVICES = ("postgres", "s3", "mlflow", "datasource", "api", "exporter", "prometheus")
DATA_INTERVAL_S = 15
ALERT = "MlopsLoopNoNewData"


def query(settings: Settings, promql: str) -> list[tuple[dict[str, str], float]]:
    """An instant query through Prometheus' HTTP API: (labels, value) per series."""
    answer = httpx.get(
        f"http://127.0.0.1:{settings.prometheus_port}/api/v1/query",
        params={"query": promql},
        timeout=10,
    )
    answer.raise_for_status()
    body = answer.json()
    assert body["status"] == "success", body
    return [(item["metric"], float(item["value"][1])) for item in body["data"]["result"]]


def value(settings: Settings, promql: str) -> float | None:
    found = query(settings, promql)
    return found[0][1] if len(found) == 1 else None


def alerts(settings: Settings, name: str) -> list[dict[str, Any]]:
    """Active (pending or firing) alerts called ``name``."""
    answer = httpx.get(f"http://127.0.0.1:{settings.prometheus_port}/api/v1/alerts", timeout=10)
    answer.raise_for_status()
    return [a for a in answer.json()["data"]["alerts"] if a["labels"]["alertname"] == name]


def eventually(settings: Settings, promql: str, expected: float, within_s: float = 60) -> None:
    """Wait until ``promql`` has one series equal to ``expected``; say what it was otherwise."""
    try:
        wait_until(promql, lambda: value(settings, promql) == expected, within_s)
    except Exception:
        pytest.fail(f"{promql}: {query(settings, promql)}, expected {expected}", pytrace=False)


def raw_batches(settings: Settings) -> int:
    engine = make_engine(settings.raw_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(batches)).scalar_one()
    finally:
        engine.dispose()


def test_prometheus_sees_the_loop_and_alerts_when_data_stops(tmp_path: Path) -> None:
    installed("prometheus", "apt-get install prometheus (scripts/ensure-tools.sh)")
    settings = fresh_settings(
        tmp_path / "state",
        prometheus_scrape_interval_s=1,
        prometheus_data_interval_s=DATA_INTERVAL_S,
        exporter_cache_s=0.5,
    )
    timings = {}
    try:
        started = time.monotonic()
        took: dict[str, str] = {}
        platform.up(settings, lambda name, _, detail: took.update({name: detail}), SERVICES)
        timings["up"] = time.monotonic() - started
        timings |= {f"tier of {name}": float(took[name].split()[0]) for name in SERVICES[-2:]}
        first = ensure_production_model(settings)
        assert first["outcome"] == "promoted", first
        production = registry.production(settings)
        assert production is not None

        # Every target is scraped, and the series are what the stores and registry hold.
        started = time.monotonic()
        for job in ("prometheus", "fastapi", "mlops-loop"):
            eventually(settings, f'up{{job="{job}"}}', 1)
        eventually(settings, "mlops_loop_batches_received_total", raw_batches(settings))
        eventually(settings, 'mlops_loop_decisions_total{outcome="promoted"}', 1)
        eventually(settings, "mlops_loop_production_version", float(production.version))
        eventually(settings, 'mlops_loop_store_up{store="raw"}', 1)
        eventually(settings, "mlops_api_model_loaded", 1)
        eventually(
            settings, f'mlops_api_model_info{{version="{production.version}"}}', 1, within_s=30
        )
        timings["series"] = time.monotonic() - started

        # `mlops status` lists both with their URLs.
        status = mlops(["status"], settings)
        for name, url in (
            ("exporter", f"http://127.0.0.1:{settings.exporter_port}/metrics"),
            ("prometheus", f"http://127.0.0.1:{settings.prometheus_port}"),
        ):
            row = next(line for line in status.stdout.splitlines() if f" {name} " in line)
            assert " up " in row, status.stdout
            assert url in row, status.stdout

        # A new batch: the data is fresh, the alert is not active.
        batch = run_data_pipeline(settings)
        assert batch["ingest"]["stored"], batch
        fresh_at = time.monotonic()
        eventually(settings, "mlops_loop_batches_received_total", raw_batches(settings))
        time.sleep(2)  # two more evaluations of the rules with the new timestamp
        assert time.monotonic() - fresh_at < 2 * DATA_INTERVAL_S, "too slow to see it quiet"
        assert alerts(settings, ALERT) == []

        # The data source stops: past two intervals, the alert is active.
        assert platform.service(settings, "datasource").stop()
        wait_until(ALERT, lambda: alerts(settings, ALERT) != [], 2 * DATA_INTERVAL_S + 30)
        timings["alert after the last batch"] = time.monotonic() - fresh_at
        (active,) = alerts(settings, ALERT)
        assert active["state"] in ("pending", "firing"), active
        assert active["labels"]["severity"] == "warning"
        assert float(active["value"]) > 2 * DATA_INTERVAL_S
    finally:
        platform.down(settings, purge=True)
    assert processes_of(settings) == []
    # key=value, as the benchmarks print them (seen with -s): what Prometheus adds to `up`.
    sys.stdout.write(
        " ".join(f"{k.replace(' ', '_')}_s={v:.1f}" for k, v in timings.items()) + "\n"
    )
