"""``production_pipeline``: tell the inference API to load the promoted model, then check it does.

Wiring only: each task calls a function of :mod:`mlops_platform.pipelines.publish`. Settings come
from the ``MLOPS_*`` environment of the worker (``MLOPS_API_URL``, ``MLOPS_API_TOKEN``, the MLflow
registry), read by ``load_settings()`` inside each task (never at import time). The publish module
(MLflow's client, through the registry) is imported inside each task, when it runs: the
dag-processor parses this file every 30 s and needs none of it.

Runs when ``modeling_pipeline`` promotes a version (asset ``production_model``). Both calls are
network calls, so both retry with exponential backoff; repeating them changes nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Asset, dag, task

from mlops_platform.settings import load_settings

log = logging.getLogger("mlops_platform.dags.production_pipeline")

PRODUCTION_MODEL = Asset("production_model")

NETWORK_RETRIES = {
    "retries": 4,
    "retry_delay": timedelta(seconds=15),
    "retry_exponential_backoff": 2.0,  # 15 s, 30 s, 1 min, 2 min
    "max_retry_delay": timedelta(minutes=5),
}


@dag(
    dag_id="production_pipeline",
    schedule=[PRODUCTION_MODEL],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["mlops", "serving"],
    doc_md=__doc__,
)
def production_pipeline() -> None:
    @task(execution_timeout=timedelta(minutes=5), **NETWORK_RETRIES)
    def notify() -> dict[str, Any]:
        # Imported here, when the task runs: MLflow (via the registry) is not for parsing.
        from mlops_platform.pipelines import publish

        answer = publish.notify(load_settings())
        log.info("model_update hook: %s, serving version %s", answer["outcome"], answer["version"])
        return answer

    @task(execution_timeout=timedelta(minutes=2), **NETWORK_RETRIES)
    def verify() -> dict[str, Any]:
        # Imported here, when the task runs: MLflow (via the registry) is not for parsing.
        from mlops_platform.pipelines import publish

        served = publish.verify(load_settings())
        log.info("the API serves %s version %s", served["model"], served["version"])
        return served

    notify() >> verify()


production_pipeline()
