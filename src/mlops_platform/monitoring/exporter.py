"""`mlops serve exporter`: the loop's metrics (docs/metrics.md, `mlops_loop_*`) for Prometheus.

A custom collector reads the stores on scrape, through a short cache so that several scrapers (or
a dashboard refresh storm) cost one set of queries per ``cache_s``. A store that cannot be read
is reported as ``mlops_loop_store_up{store}`` 0 instead of failing the scrape.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from mlops_platform.monitoring.loop_state import LoopState, read_clean, read_raw

log = logging.getLogger(__name__)


class LoopCollector(Collector):
    """Reads RAW and CLEAN at most once per ``cache_s`` and turns the state into metrics."""

    def __init__(
        self,
        raw: Engine,
        clean: Engine,
        cache_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._raw, self._clean, self._cache_s, self._clock = raw, clean, cache_s, clock
        self._lock = threading.Lock()
        self._read_at = -float("inf")
        self._state = LoopState()
        self._up = {"raw": 0.0, "clean": 0.0}

    def state(self) -> tuple[LoopState, dict[str, float]]:
        with self._lock:
            if self._clock() - self._read_at >= self._cache_s:
                self._state, self._up = self._read()
                self._read_at = self._clock()
            return self._state, self._up

    def _read(self) -> tuple[LoopState, dict[str, float]]:
        parts: dict = {}
        up = {}
        for store, read, engine in (
            ("raw", read_raw, self._raw),
            ("clean", read_clean, self._clean),
        ):
            try:
                parts.update(read(engine))
                up[store] = 1.0
            except SQLAlchemyError as error:
                log.warning("cannot read %s for loop metrics: %s", store, error.__class__.__name__)
                up[store] = 0.0
        return LoopState(**parts), up

    def collect(self) -> Iterator[Metric]:
        state, up = self.state()
        yield from loop_metrics(state, up)


def _gauge(name: str, doc: str, value: float | None, unit: str = "") -> Iterator[Metric]:
    if value is not None:
        yield GaugeMetricFamily(name, doc, value=value, unit=unit)


def _by_label(
    kind: type[GaugeMetricFamily] | type[CounterMetricFamily],
    name: str,
    doc: str,
    label: str,
    values: dict[str, float],
) -> Metric:
    """One family with a sample per ``label`` value (sorted: stable exposition)."""
    family = kind(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def loop_metrics(state: LoopState, up: dict[str, float]) -> Iterator[Metric]:
    """The metric families of docs/metrics.md's loop table, from one state."""
    gauge, counter = GaugeMetricFamily, CounterMetricFamily
    yield _by_label(
        gauge,
        "mlops_loop_store_up",
        "1 when the store could be read at the last scrape",
        "store",
        up,
    )
    yield from _gauge(
        "mlops_loop_newest_batch_timestamp_seconds",
        "When the newest RAW batch was received (data freshness)",
        state.newest_batch_at,
    )
    yield counter(
        "mlops_loop_batches_received", "Batches stored in RAW", value=state.batches_received
    )
    rows = {"received": state.rows_received, "cleaned": state.rows_cleaned}
    yield _by_label(
        counter, "mlops_loop_rows", "Rows received in RAW and cleaned into CLEAN", "stage", rows
    )
    yield _by_label(
        counter,
        "mlops_loop_rejected_rows",
        "Rows rejected by cleaning, by rule",
        "rule",
        state.rows_rejected_by_rule,
    )
    yield _by_label(
        gauge,
        "mlops_loop_latest_batch_rows",
        "Rows of the newest cleaned batch: received, cleaned, rejected",
        "stage",
        state.latest_batch_rows,
    )
    yield _by_label(
        gauge,
        "mlops_loop_latest_batch_rejected_rows",
        "Rows of the newest cleaned batch rejected, by rule",
        "rule",
        state.latest_batch_rejected_by_rule,
    )
    yield _by_label(
        counter,
        "mlops_loop_decisions",
        "Model decisions recorded, by outcome",
        "outcome",
        state.decisions_by_outcome,
    )
    yield from _decision_metrics(state)


def _decision_metrics(state: LoopState) -> Iterator[Metric]:
    decision = state.latest_decision
    if decision is not None:
        info = GaugeMetricFamily(
            "mlops_loop_latest_decision_info",
            "The newest decision (=1): its data version and outcome",
            labels=["data_version", "outcome"],
        )
        info.add_metric([decision.data_version, decision.outcome], 1)
        yield info
        yield from _gauge(
            "mlops_loop_latest_decision_timestamp_seconds",
            "When the newest decision was made",
            decision.decided_at,
        )
        yield _by_label(
            GaugeMetricFamily,
            "mlops_loop_drift_psi",
            "PSI of each feature at the newest decision (new data against the reference)",
            "feature",
            decision.drift_psi,
        )
        yield from _gauge(
            "mlops_loop_drifted_features",
            "Features above the PSI threshold at the newest decision",
            decision.drifted,
        )
        yield from _model_metrics(
            "candidate", "the newest decision's candidate", decision.candidate
        )
    yield from _gauge(
        "mlops_loop_last_promotion_timestamp_seconds",
        "When the model now in production was promoted",
        state.last_promotion_at,
    )
    if state.production_version is not None:
        version = GaugeMetricFamily(
            "mlops_loop_production_version",
            "Registry version of the model in production (by the newest promotion)",
        )
        version.add_metric([], float(state.production_version))
        yield version
    yield from _model_metrics("production", "the model in production", state.production_metrics)


def _model_metrics(role: str, who: str, metrics: dict[str, float] | None) -> Iterator[Metric]:
    if not metrics:
        return
    if "mae" in metrics:
        yield GaugeMetricFamily(
            f"mlops_loop_{role}_test_mae_dollars", f"Test MAE of {who}", value=metrics["mae"]
        )
    if "r2" in metrics:
        yield GaugeMetricFamily(
            f"mlops_loop_{role}_test_r2", f"Test R² of {who}", value=metrics["r2"]
        )


def serve(raw: Engine, clean: Engine, host: str, port: int, cache_s: float) -> None:
    """Serve /metrics until interrupted."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LoopCollector(raw, clean, cache_s))
    server, thread = start_http_server(port, addr=host, registry=registry)
    log.info("loop metrics on http://%s:%d/metrics", host, port)
    try:
        thread.join()
    finally:
        server.shutdown()
