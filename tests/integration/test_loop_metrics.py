"""The loop exporter on real PostgreSQL: what it reports is what RAW and CLEAN hold, it reads them
at most once per cache period, and a store it cannot read is a metric, not a failed scrape."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from mlops_platform.datasource.simulator import SimulatorConfig
from mlops_platform.monitoring.exporter import LoopCollector
from mlops_platform.storage.engine import make_engine
from mlops_platform.storage.tables import batches, model_history, rejected
from tests.conftest import Stores
from tests.support import collect

pytestmark = pytest.mark.integration

METRICS_DOC = Path(__file__).parents[2] / "docs" / "metrics.md"
CONFIG = SimulatorConfig(batches=3, batch_size=400, seed=5, dirty_rate=0.2)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def scrape(collector: LoopCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Sample name and labels -> value, as Prometheus would read the exposition."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def decision(version: str, outcome: str, mae: float, psi: float, **values: Any) -> dict[str, Any]:
    return {
        "data_version": f"batch-{version}",
        "max_batch_id": int(version),
        "reference_rows": 100,
        "new_rows": 50,
        "retrain": True,
        "decision_reasons": ["test"],
        "drift": {"house_size": {"psi": psi, "ks": 0.1}, "state": {"psi": 0.01}},
        "drifted_features": {"house_size": psi} if psi > 0.2 else {},
        "candidate_version": version,
        "candidate_metrics": {"mae": mae, "r2": 0.8, "rmse": 2 * mae, "mape": 0.2},
        "outcome": outcome,
        "promoted": outcome == "promoted",
        "reason": outcome,
        **values,
    }


def test_the_metrics_are_what_the_stores_hold(stores: Stores) -> None:
    clock = Clock()
    collector = LoopCollector(stores.raw, stores.clean, cache_s=10, clock=clock)
    empty = scrape(collector)
    assert empty[("mlops_loop_store_up", (("store", "clean"),))] == 1
    assert empty[("mlops_loop_rows_total", (("stage", "received"),))] == 0
    assert not any(name == "mlops_loop_newest_batch_timestamp_seconds" for name, _ in empty)

    for number in (1, 2):
        collect(stores.raw, stores.clean, CONFIG, number)
    with stores.clean.begin() as conn:
        conn.execute(model_history.insert().values(decision("1", "promoted", 90_000, 0.05)))
        conn.execute(model_history.insert().values(decision("2", "rejected", 95_000, 0.4)))

    assert scrape(collector) == empty, "read again only once the cache period is over"
    clock.now = 10
    metrics = scrape(collector)

    with stores.raw.connect() as conn:
        newest = conn.execute(select(func.max(batches.c.received_at))).scalar_one()
    with stores.clean.connect() as conn:
        by_rule = dict(conn.execute(select(rejected.c.rule, func.count()).group_by("rule")).all())
        latest_rules = dict(
            conn.execute(
                select(rejected.c.rule, func.count())
                .where(
                    rejected.c.batch_id == select(func.max(rejected.c.batch_id)).scalar_subquery()
                )
                .group_by("rule")
            ).all()
        )
    assert by_rule, "the dirty rate gives rejections"
    assert metrics[("mlops_loop_newest_batch_timestamp_seconds", ())] == newest.timestamp()
    assert metrics[("mlops_loop_batches_received_total", ())] == 2
    assert metrics[("mlops_loop_rows_total", (("stage", "received"),))] == 800
    cleaned = metrics[("mlops_loop_rows_total", (("stage", "cleaned"),))]
    assert cleaned + sum(by_rule.values()) == 800
    for rule, count in by_rule.items():
        assert metrics[("mlops_loop_rejected_rows_total", (("rule", rule),))] == count
    for rule, count in latest_rules.items():
        assert metrics[("mlops_loop_latest_batch_rejected_rows", (("rule", rule),))] == count
    assert metrics[("mlops_loop_latest_batch_rows", (("stage", "received"),))] == 400

    assert metrics[("mlops_loop_decisions_total", (("outcome", "promoted"),))] == 1
    assert metrics[("mlops_loop_decisions_total", (("outcome", "rejected"),))] == 1
    info = (("data_version", "batch-2"), ("outcome", "rejected"))
    assert metrics[("mlops_loop_latest_decision_info", info)] == 1
    assert metrics[("mlops_loop_drift_psi", (("feature", "house_size"),))] == 0.4
    assert metrics[("mlops_loop_drifted_features", ())] == 1
    assert metrics[("mlops_loop_candidate_test_mae_dollars", ())] == 95_000
    assert metrics[("mlops_loop_production_version", ())] == 1
    assert metrics[("mlops_loop_production_test_mae_dollars", ())] == 90_000
    assert metrics[("mlops_loop_production_test_r2", ())] == 0.8
    assert ("mlops_loop_last_promotion_timestamp_seconds", ()) in metrics

    # With data in every table, the exposed names and labels are exactly docs/metrics.md's.
    exposed: dict[str, set[str]] = {}
    for name, labels in metrics:
        exposed.setdefault(name, set()).update(label for label, _ in labels)
    assert exposed == documented_loop_metrics()


def documented_loop_metrics() -> dict[str, set[str]]:
    """Name → label names of the loop table in docs/metrics.md (the contract with the charts)."""
    rows = re.findall(
        r"^\| `(mlops_loop_\w+)` \| [^|]+ \| ([^|]+) \|", METRICS_DOC.read_text(), re.M
    )
    assert rows, "the loop table is in docs/metrics.md"
    return {
        name: {part.strip(" `") for part in labels.split("(")[0].split(",")} - {"—", ""}
        for name, labels in rows
    }


def test_a_store_that_cannot_be_read_is_reported_not_raised(stores: Stores) -> None:
    gone = make_engine("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2")
    metrics = scrape(LoopCollector(gone, stores.clean, cache_s=0))
    assert metrics[("mlops_loop_store_up", (("store", "raw"),))] == 0
    assert metrics[("mlops_loop_store_up", (("store", "clean"),))] == 1
    assert metrics[("mlops_loop_rows_total", (("stage", "cleaned"),))] == 0
