"""A log-linear location model with boosted trees on its residuals.

Why two parts: a house's price is mostly *where* times *how big*. Zip codes are many and each
has few listings (median 4 a batch window), so their effects must be pooled: a ridge regression
on one-hot state, city and zip shrinks a rare zip toward its city and state, which trees on a
target encoding do not. The location effects of a zip relative to its city hold across market
regimes, so the linear part learns from a long history. What a drift changes (a state's level,
the value of size) the trees learn from the residuals, weighted toward the newest batches.

Why the linear part reweights its rows: prices have heavy tails (a few listings far above or
below their street), and a record without the living area is about twice as noisy as one with it
(its residual carries the size it does not state). Plain least squares lets both pull a zip's
few-listing estimate around. A refit with Student-t weights (each group of rows on its own noise
scale) is a step toward the maximum-likelihood fit for such noise; on three simulator streams one
refit lowered served MAE by 0.5–1.6 %, a second added nothing beyond noise and costs another
~0.5 CPU-s at 78k rows (docs/BENCHMARKS.md).

Measured on the simulator's default stream (``bench/quality.py``): served MAE about 1.2× the
noise floor, against 1.4× for the trees alone; see docs/BENCHMARKS.md.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone

from mlops_platform.pipelines import exact_ridge


class LinearTrees(RegressorMixin, BaseEstimator):
    """``exp(linear(x) + trees(x))``, both parts fitted on log-price.

    ``linear`` and ``trees`` are unfitted pipelines ending in an estimator named ``model``; when
    their first steps (the feature builder) are alike, it is fitted and run once for both.
    Sample weights (recency weights, 1 for the newest batch) are raised to the power
    ``1 / memory`` of each part: ``linear_memory=2`` doubles the half-life the linear part
    learns over, ``trees_memory=1/3`` makes the trees follow the newest market.
    ``robust_rounds`` refits of the linear part weight each row by its Student-t (``tail_df``)
    likelihood weight, rows with and without a living area each on their own noise scale.
    """

    def __init__(
        self,
        linear: Any,
        trees: Any,
        linear_memory: float = 2.0,
        trees_memory: float = 1 / 3,
        robust_rounds: int = 1,
        tail_df: float = 4.0,
    ) -> None:
        self.linear = linear
        self.trees = trees
        self.linear_memory = linear_memory
        self.trees_memory = trees_memory
        self.robust_rounds = robust_rounds
        self.tail_df = tail_df

    def fit(
        self, X: pd.DataFrame, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> LinearTrees:
        log_y = np.log(np.asarray(y, dtype=np.float64))
        weight = np.ones(len(log_y)) if sample_weight is None else np.asarray(sample_weight)
        linear, trees = clone(self.linear), clone(self.trees)
        features = linear[0].fit_transform(X, log_y)
        encoded = linear[1:-1].fit_transform(features, log_y)
        linear_weight = weight ** (1 / self.linear_memory)
        exact_ridge.fit(linear[-1], encoded, log_y, linear_weight)
        residual = log_y - linear[-1].predict(encoded)
        unsized = features["log_house_size"].isna().to_numpy()
        for _ in range(self.robust_rounds):
            noise = noise_weights(residual, unsized, self.tail_df)
            exact_ridge.fit(linear[-1], encoded, log_y, linear_weight * noise)
            residual = log_y - linear[-1].predict(encoded)
        del encoded
        trees_weight = weight ** (1 / self.trees_memory)
        if _alike(linear[0], trees[0]):
            trees.steps[0] = (trees.steps[0][0], copy.deepcopy(linear[0]))
            trees[1:].fit(features, residual, model__sample_weight=trees_weight)
        else:
            trees.fit(X, residual, model__sample_weight=trees_weight)
        self.linear_, self.trees_ = linear, trees
        self.n_features_in_ = X.shape[1]
        return self

    def predict_log(self, X: pd.DataFrame) -> np.ndarray:
        """log(price): what SHAP contributions add up to."""
        return self.linear_.predict(X) + self.trees_.predict(X)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.exp(self.predict_log(X))


def noise_weights(residual: np.ndarray, group: np.ndarray, tail_df: float) -> np.ndarray:
    """Per row, the weight of a Student-t likelihood: ``(ν + 1) / (ν + (r / s)²) / s²``, with
    ``s`` the robust scale (MAD) of the row's group (``group`` True or False). Normalised to
    mean 1 so the ridge penalty keeps its meaning."""
    scale = np.empty(len(residual))
    for members in (group, ~group):
        if members.any():
            values = residual[members]
            mad = np.median(np.abs(values - np.median(values)))
            scale[members] = max(1.4826 * mad, 1e-6)
    z = residual / scale
    weight = (tail_df + 1) / (tail_df + z**2) / scale**2
    return weight / weight.mean()


def _alike(first: Any, second: Any) -> bool:
    """Same class and parameters: fitted on the same rows, the same fitted step."""
    return type(first) is type(second) and first.get_params() == second.get_params()
