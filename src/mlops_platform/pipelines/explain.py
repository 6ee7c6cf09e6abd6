"""SHAP explanations per original listing field, for every model family.

Contributions are additive in log-price space: ``base_value + sum(contributions) ==
log(prediction)``. Trees are explained exactly by TreeExplainer; the Gamma GLM (log link) and the
ridge are linear in that space, so their contributions are ``coef * (x - mean x)``; a
:class:`LinearTrees` model is the sum of its two parts' explanations. Encoded columns (one-hot
states, target-encoded zips, derived ages) are summed back to the field they came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from sklearn.compose import TransformedTargetRegressor

from mlops_platform.pipelines.features import LOW_CARDINALITY, SOURCES, raw_frame
from mlops_platform.pipelines.linear_trees import LinearTrees
from mlops_platform.schema import FEATURES

# A run's SHAP background: rows of its test split, logged by the modeling pipeline's evaluate
# step; the pipeline's explain step and the API's /explain both explain against them.
BACKGROUND_PATH = "shap/background.json"


def load_background(run_id: str) -> pd.DataFrame:
    """A run's background as the model's raw feature frame (from the tracking server set)."""
    return raw_frame(mlflow.artifacts.load_dict(f"runs:/{run_id}/{BACKGROUND_PATH}")["rows"])


@dataclass(frozen=True)
class Explanation:
    """Per-row SHAP values (rows × original features) and the shared base value."""

    base_value: float
    values: pd.DataFrame

    def importance(self) -> dict[str, float]:
        """Mean |SHAP| per original feature, largest first."""
        means = self.values.abs().mean().sort_values(ascending=False)
        return {name: float(value) for name, value in means.items()}


def source_of(encoded_name: str) -> str:
    """``onehot__state_Texas`` → ``state``; ``numeric__missingindicator_bed`` → ``bed``."""
    name = encoded_name.split("__", 1)[-1].removeprefix("missingindicator_")
    if name in SOURCES:
        return SOURCES[name]
    for column in (*LOW_CARDINALITY, "city", "zip_code"):  # one-hot columns: "<column>_<value>"
        if name.startswith(f"{column}_"):
            return SOURCES[column]
    raise KeyError(f"no original feature for encoded column {encoded_name!r}")


def _split(model: Any) -> tuple[Any, Any]:
    """(feature pipeline, final estimator) of either family."""
    pipeline = model.regressor_ if isinstance(model, TransformedTargetRegressor) else model
    return pipeline[:-1], pipeline[-1]


def _dense(matrix: Any) -> np.ndarray:
    return np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix, dtype=float)


def explain(model: Any, frame: pd.DataFrame, background: pd.DataFrame | None = None) -> Explanation:
    """SHAP values of ``frame``'s rows; ``background`` (default: ``frame``) sets the GLM's mean."""
    if isinstance(model, LinearTrees):
        parts = [explain(part, frame, background) for part in (model.linear_, model.trees_)]
        return Explanation(sum(p.base_value for p in parts), sum(p.values for p in parts))
    prepare, estimator = _split(model)
    encoded = _dense(prepare.transform(frame[list(FEATURES)]))
    names = list(prepare.get_feature_names_out())
    if hasattr(estimator, "coef_"):  # Gamma GLM with log link: exactly linear in log space
        rows = (background if background is not None else frame)[list(FEATURES)]
        mean = _dense(prepare.transform(rows)).mean(axis=0)
        raw = (encoded - mean) * estimator.coef_
        base = float(estimator.intercept_ + mean @ estimator.coef_)
    else:
        import shap

        explainer = shap.TreeExplainer(estimator)
        raw = explainer.shap_values(encoded)
        base = float(np.ravel(explainer.expected_value)[0])
    per_encoded = pd.DataFrame(raw, columns=names, index=frame.index)
    grouped = per_encoded.T.groupby([source_of(n) for n in names]).sum().T
    return Explanation(base, grouped.reindex(columns=list(FEATURES), fill_value=0.0))


def explain_record(model: Any, record: pd.DataFrame, background: pd.DataFrame) -> dict[str, Any]:
    """One listing's waterfall: base value, contribution per field, and the prediction."""
    explanation = explain(model, record, background)
    prediction = float(model.predict(record[list(FEATURES)])[0])
    return {
        "base_value": explanation.base_value,
        "contributions": {k: float(v) for k, v in explanation.values.iloc[0].items()},
        "prediction": prediction,
        "space": "log(price)",
    }
