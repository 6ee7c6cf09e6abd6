"""``data_pipeline``: fetch one batch from the data source → keep it in RAW → clean it into CLEAN.

Wiring only: each task calls a function of :mod:`mlops_platform.pipelines` and passes plain values.
Settings come from the ``MLOPS_*`` environment of the worker, read by ``load_settings()`` inside
each task (never at import time, so parsing this file needs no configuration). The pipelines'
modules are imported inside the tasks too, when they run: the dag-processor parses this file every
30 s and needs none of them. The schedule is ``MLOPS_DATA_SCHEDULE`` when set (any Airflow schedule
string), hourly otherwise.

"No more data" (the source's normal end) skips the run instead of failing it. The asset
``clean_data`` gets an event only when new clean rows were written, so ``modeling_pipeline``
runs only when there is something new to learn from.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Asset, AssetAlias, dag, task
from airflow.sdk.exceptions import AirflowSkipException

from mlops_platform.settings import load_settings

log = logging.getLogger("mlops_platform.dags.data_pipeline")

CLEAN_DATA = Asset("clean_data")
CLEAN_DATA_ALIAS = AssetAlias("clean_data_written")
# Hourly unless the deployment says otherwise; read here because it is DAG structure, not a
# task setting (the tasks' settings are read when they run).
SCHEDULE = os.environ.get("MLOPS_DATA_SCHEDULE", "@hourly")

NETWORK_RETRIES = {
    "retries": 4,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": 2.0,  # 30 s, 1 min, 2 min, 4 min
    "max_retry_delay": timedelta(minutes=10),
}


@dag(
    dag_id="data_pipeline",
    schedule=SCHEDULE,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # batches are served in order: one collection at a time
    tags=["mlops", "data"],
    doc_md=__doc__,
)
def data_pipeline() -> None:
    @task(execution_timeout=timedelta(minutes=5), **NETWORK_RETRIES)
    def fetch() -> dict[str, Any]:
        # Imported here, when the task runs: parsing needs no HTTP client or database driver.
        from mlops_platform.pipelines.ingest import fetch as fetch_batch

        batch = fetch_batch(load_settings())
        if batch is None:
            raise AirflowSkipException("the data source has no more batches for this group/day")
        log.info(
            "fetched batch %s of group %s/%s: %d rows",
            batch["batch_number"],
            batch["group_number"],
            batch["day"],
            len(batch["records"]),
        )
        return batch

    @task(execution_timeout=timedelta(minutes=10))
    def ingest(batch: dict[str, Any]) -> dict[str, Any]:
        # Imported here, when the task runs: parsing needs no database driver.
        from mlops_platform.pipelines.ingest import ingest as store_batch

        stored = store_batch(load_settings(), batch)
        log.info(
            "batch %s %s RAW as batch id %s (%d rows)",
            stored["batch_number"],
            "stored in" if stored["stored"] else "was already in",
            stored["batch_id"],
            stored["rows"],
        )
        return stored

    @task(execution_timeout=timedelta(minutes=20), outlets=[CLEAN_DATA_ALIAS])
    def clean(outlet_events: Any = None) -> dict[str, Any]:
        # Imported here, when the task runs: parsing needs no validation schema or database.
        from mlops_platform.pipelines.clean import clean as clean_new_batches

        result = clean_new_batches(load_settings())
        if result["cleaned"] > 0:
            outlet_events[CLEAN_DATA_ALIAS].add(
                CLEAN_DATA, extra={"batches": result["batches"], "cleaned": result["cleaned"]}
            )
        log.info(
            "cleaned %d new rows from RAW batches %s (%d repaired %s), %d rejected %s; "
            "clean_data %s",
            result["cleaned"],
            result["batches"],
            result["repaired"],
            result["repaired_by_rule"] or "",
            result["rejected"],
            result["rejected_by_rule"] or "",
            "updated" if result["cleaned"] > 0 else "unchanged",
        )
        return result

    ingest(fetch()) >> clean()


data_pipeline()
