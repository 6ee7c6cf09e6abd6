"""What the UI reads from MLflow: the production alias and each version's SHAP summary."""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException


def production_version(tracking_uri: str, model_name: str, alias: str) -> str | None:
    """The version under the serving alias, or None when nothing was promoted yet."""
    try:
        found = MlflowClient(tracking_uri=tracking_uri).get_model_version_by_alias(
            model_name, alias
        )
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return str(found.version)


def shap_importance(tracking_uri: str, shap_uri: str) -> pd.DataFrame:
    """Mean |SHAP| per listing field (log-price units), largest first, from ``shap_uri``
    (``runs:/RUN/shap``, as the modeling pipeline's explain task records it)."""
    mlflow.set_tracking_uri(tracking_uri)
    summary = mlflow.artifacts.load_dict(f"{shap_uri.rstrip('/')}/importance.json")
    frame = pd.DataFrame(
        sorted(summary["importance"].items(), key=lambda item: -item[1]),
        columns=["feature", "importance"],
    )
    return frame
