"""The first model of a fresh platform: one batch through the data pipeline, one modeling run,
and the API told to load what was promoted — so `mlops up` ends with a model in production."""

from __future__ import annotations

from typing import Any

from mlops_platform.local.quiet import quiet
from mlops_platform.pipelines import publish, registry
from mlops_platform.pipelines.data import run_data_pipeline
from mlops_platform.pipelines.modeling import run_model_pipeline
from mlops_platform.settings import Settings


def ensure_production_model(settings: Settings) -> dict[str, Any]:
    """Nothing to do when a version is already in production (``ran`` False); otherwise run the
    pipelines once, directly (the scheduler takes over from there), and notify the API."""
    current = registry.production(settings)
    if current is not None:
        return {"ran": False, "version": current.version, "outcome": "already in production"}
    with quiet(settings.state_dir.resolve() / "logs" / "pipelines.log"):
        data = run_data_pipeline(settings)
        model = run_model_pipeline(settings)
        answer = publish.notify(settings) if model["outcome"] == "promoted" else None
    return {
        "ran": True,
        "version": model.get("candidate_version"),
        "outcome": model["outcome"],
        "reason": model["reason"],
        "batch": (data["ingest"] or {}).get("batch_number"),
        "api": (answer or {}).get("outcome"),
    }
