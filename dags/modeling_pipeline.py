"""``modeling_pipeline``: decide → train → evaluate → promote → explain → record.

Wiring only: each task calls a function of :mod:`mlops_platform.pipelines.modeling` with the
previous tasks' plain dicts. Settings come from the ``MLOPS_*`` environment of the worker, read by
``load_settings()`` inside each task (never at import time). The modeling module (scikit-learn,
MLflow, skops, SHAP, pandas: seconds to import) is imported inside each task, when it runs:
the dag-processor parses this file every 30 s and needs none of it.

Runs when ``data_pipeline`` writes new clean rows (asset ``clean_data``). A data version is
decided once: a re-run finds the decision in ``model_history`` and trains nothing. The asset
``production_model`` gets an event only when a candidate was promoted, from ``record``, the last
task: by then the version's SHAP background exists, so the API that ``production_pipeline``
notifies verifies its compiled path on those rows at the first load.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Asset, AssetAlias, dag, task

from mlops_platform.settings import load_settings

log = logging.getLogger("mlops_platform.dags.modeling_pipeline")

CLEAN_DATA = Asset("clean_data")
PRODUCTION_MODEL = Asset("production_model")
PRODUCTION_MODEL_ALIAS = AssetAlias("production_model_promoted")


@dag(
    dag_id="modeling_pipeline",
    schedule=[CLEAN_DATA],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # one decision at a time over the data CLEAN holds
    tags=["mlops", "modeling"],
    doc_md=__doc__,
)
def modeling_pipeline() -> None:
    @task(execution_timeout=timedelta(minutes=10))
    def decide() -> dict[str, Any]:
        # Imported here, when the task runs: scikit-learn, MLflow and SHAP are not for parsing.
        from mlops_platform.pipelines import modeling

        decision = modeling.decide(load_settings())
        if decision.get("already_decided"):
            outcome = "already decided, nothing to do"
        else:
            outcome = "retrain" if decision["retrain"] else "no retrain"
        log.info(
            "data %s: %s (%s)",
            decision["data_version"],
            outcome,
            "; ".join(decision["reasons"]),
        )
        return decision

    @task(execution_timeout=timedelta(hours=1))
    def train(decision: dict[str, Any]) -> dict[str, Any] | None:
        # Imported here, when the task runs: scikit-learn, MLflow and SHAP are not for parsing.
        from mlops_platform.pipelines import modeling

        candidate = modeling.train(load_settings(), decision)
        log.info(
            "candidate: %s",
            f"version {candidate['version']} ({candidate['family']})" if candidate else "none",
        )
        return candidate

    @task(execution_timeout=timedelta(minutes=20))
    def evaluate(
        decision: dict[str, Any], candidate: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        # Imported here, when the task runs: scikit-learn, MLflow and SHAP are not for parsing.
        from mlops_platform.pipelines import modeling

        evaluation = modeling.evaluate(load_settings(), decision, candidate)
        log.info(
            "evaluation: %s",
            f"candidate MAE {evaluation['candidate']['mae']:.0f} on {evaluation['eval_rows']} rows"
            if evaluation
            else "nothing to evaluate",
        )
        return evaluation

    @task(execution_timeout=timedelta(minutes=5))
    def promote(
        decision: dict[str, Any],
        candidate: dict[str, Any] | None,
        evaluation: dict[str, Any] | None,
    ) -> dict[str, Any]:
        # Imported here, when the task runs: scikit-learn, MLflow and SHAP are not for parsing.
        from mlops_platform.pipelines import modeling

        promotion = modeling.promote(load_settings(), decision, candidate, evaluation)
        log.info(
            "promotion: %s",
            f"version {candidate['version']} promoted" if promotion["promoted"] else "none",
        )
        return promotion

    @task(execution_timeout=timedelta(minutes=20))
    def explain(candidate: dict[str, Any] | None) -> dict[str, Any] | None:
        # Imported here, when the task runs: scikit-learn, MLflow and SHAP are not for parsing.
        from mlops_platform.pipelines import modeling

        explanation = modeling.explain(load_settings(), candidate)
        log.info("SHAP: %s", explanation["shap_uri"] if explanation else "nothing to explain")
        return explanation

    @task(execution_timeout=timedelta(minutes=5), outlets=[PRODUCTION_MODEL_ALIAS])
    def record(
        decision: dict[str, Any],
        candidate: dict[str, Any] | None,
        evaluation: dict[str, Any] | None,
        promotion: dict[str, Any],
        explanation: dict[str, Any] | None,
        outlet_events: Any = None,
    ) -> dict[str, Any]:
        # Imported here, when the task runs: scikit-learn, MLflow and SHAP are not for parsing.
        from mlops_platform.pipelines import modeling

        row = modeling.record(
            load_settings(), decision, candidate, evaluation, promotion, explanation
        )
        log.info("history for %s: %s", row.get("data_version"), row["reason"])
        if promotion["promoted"] and candidate is not None:
            outlet_events[PRODUCTION_MODEL_ALIAS].add(
                PRODUCTION_MODEL, extra={"version": candidate["version"]}
            )
        return row

    decision = decide()
    candidate = train(decision)
    evaluation = evaluate(decision, candidate)
    promotion = promote(decision, candidate, evaluation)
    explanation = explain(candidate)
    promotion >> explanation  # SHAP after the verdict, as the pipeline's order says
    record(decision, candidate, evaluation, promotion, explanation)


modeling_pipeline()
