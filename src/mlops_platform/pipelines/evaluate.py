"""Regression metrics, computed the same way for every model and every comparison."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    r2_score,
)

from mlops_platform.schema import FEATURES, TARGET

METRICS: tuple[str, ...] = ("mae", "rmse", "r2", "mape")


def regression_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, sample_weight: np.ndarray | None = None
) -> dict[str, float]:
    """MAE, RMSE, R², MAPE, plus how many predictions were unusable (NaN, inf, ≤ 0).

    ``sample_weight`` weighs rows as training does (recency), so validation judges a model on
    the market as it is now.
    """
    y_pred = np.asarray(y_pred, dtype=float)
    bad = ~np.isfinite(y_pred) | (y_pred <= 0)
    safe = np.where(bad, np.nanmedian(y_true), y_pred)
    w = sample_weight
    return {
        "mae": float(mean_absolute_error(y_true, safe, sample_weight=w)),
        "rmse": float(np.sqrt(mean_squared_error(y_true, safe, sample_weight=w))),
        "r2": float(r2_score(y_true, safe, sample_weight=w)),
        "mape": float(mean_absolute_percentage_error(y_true, safe, sample_weight=w)),
        "bad_predictions": float(bad.sum()),
        "rows": float(len(y_true)),
    }


def evaluate(model: Any, frame: pd.DataFrame) -> dict[str, float]:
    """A fitted model's metrics on ``frame`` (clean listings with the price)."""
    return regression_metrics(frame[TARGET].to_numpy(), model.predict(frame[list(FEATURES)]))
