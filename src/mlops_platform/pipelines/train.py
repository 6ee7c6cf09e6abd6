"""Training: model families on the same features; the best compared one on validation wins.

- ``glm``: the original system's baseline, a Gamma GLM (log link) on price, with one-hot
  low-cardinality and target-encoded high-cardinality categories.
- ``hgb``: gradient-boosted trees on log-price (squared error: ~60× faster to fit than absolute
  error, which re-solves every leaf as a median), target-encoded high-cardinality
  categories and ordinal codes for the low-cardinality ones.
- ``linear_trees``: a ridge regression on log-price with one-hot state, city and zip (pooled
  location effects, long memory), plus small boosted trees on its residuals that follow the
  newest market (:mod:`mlops_platform.pipelines.linear_trees`).

Which families a new model is chosen from is a setting (``model_families``); by default only
``linear_trees``, fitted once on every train row. The others are built and served (models
registered before may be GLMs or boosted trees) but no longer compared by default: neither ever
won (validation MAE at 100k rows 109k for ``glm``, 99k for ``hgb``, 94k for ``linear_trees``; at
1M 178k, 171k, 161k; ``hgb`` lost every decision on five simulator streams with drift), and the
comparison was half of training's time (docs/BENCHMARKS.md). A first model must still beat the
original system's GLM on the test rows before it is promoted (``evidence.original_glm``).

Recent batches weigh more (``recency_half_life``), so after a drift the model follows the new
market while still learning from the old one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import GammaRegressor, Ridge
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler, TargetEncoder

from mlops_platform.pipelines.evaluate import regression_metrics
from mlops_platform.pipelines.features import (
    HIGH_CARDINALITY,
    LOW_CARDINALITY,
    NUMERIC,
    ListingFeatureBuilder,
)
from mlops_platform.pipelines.linear_trees import LinearTrees
from mlops_platform.pipelines.sample import at_most, uniform
from mlops_platform.schema import FEATURES, TARGET

log = logging.getLogger(__name__)

FAMILIES: tuple[str, ...] = ("glm", "hgb", "linear_trees")
# Location levels the linear part pools, coarse to fine (a rare zip leans on its city and state).
LOCATION_LEVELS: tuple[str, ...] = ("status", "state", "city", "zip_code")
VALIDATION_FRACTION = 0.15
# Choosing a family needs a fair comparison, not every row: candidates are fitted on at most this
# many rows and scored on at most VALIDATION_ROWS; only the chosen family is fitted on everything.
# At 100k train rows this cuts training from four full fits to one (bench/train.py).
SELECTION_ROWS = 25_000
VALIDATION_ROWS = 10_000


def build_model(family: str, seed: int) -> Any:
    """An unfitted model of ``family``: features + encoding + estimator, raw listings in."""
    # TargetEncoder shuffles its cross-fitting folds with an unseeded generator by default.
    folds = KFold(n_splits=5, shuffle=True, random_state=seed)
    if family == "glm":
        encode = ColumnTransformer(
            [
                (
                    "numeric",
                    make_pipeline(
                        SimpleImputer(strategy="median", add_indicator=True), StandardScaler()
                    ),
                    list(NUMERIC),
                ),
                (
                    "onehot",
                    OneHotEncoder(handle_unknown="ignore", min_frequency=5),
                    list(LOW_CARDINALITY),
                ),
                (
                    "target",
                    make_pipeline(
                        TargetEncoder(target_type="continuous", cv=folds), StandardScaler()
                    ),
                    list(HIGH_CARDINALITY),
                ),
            ],
            verbose_feature_names_out=True,
        )
        estimator = GammaRegressor(alpha=1e-4, max_iter=500)
        return Pipeline(
            [("features", ListingFeatureBuilder()), ("encode", encode), ("model", estimator)]
        )
    if family == "hgb":
        encode = ColumnTransformer(
            [
                ("numeric", "passthrough", list(NUMERIC)),
                (
                    "ordinal",
                    _ordinal(),
                    list(LOW_CARDINALITY),
                ),
                (
                    "target",
                    TargetEncoder(target_type="continuous", cv=folds),
                    list(HIGH_CARDINALITY),
                ),
            ],
            verbose_feature_names_out=True,
        )
        # Ordinal codes split as numbers (no native categorical splits), which keeps the trees
        # explainable by SHAP's exact TreeExplainer.
        estimator = HistGradientBoostingRegressor(
            loss="squared_error",
            learning_rate=0.08,
            max_iter=400,
            max_leaf_nodes=48,
            min_samples_leaf=20,
            l2_regularization=1.0,
            early_stopping=True,
            validation_fraction=0.1,
            n_iter_no_change=20,
            random_state=seed,
        )
        inner = Pipeline(
            [("features", ListingFeatureBuilder()), ("encode", encode), ("model", estimator)]
        )
        return TransformedTargetRegressor(
            regressor=inner, func=np.log, inverse_func=np.exp, check_inverse=False
        )
    if family == "linear_trees":
        return LinearTrees(linear=_location_ridge(), trees=_residual_trees(seed))
    raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")


def _location_ridge() -> Pipeline:
    """Ridge on log-price: imputed, scaled numbers (with missing indicators) and one-hot
    locations; one penalty shrinks every level, so a zip seen twice stays near its city."""
    encode = ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(
                    SimpleImputer(strategy="median", add_indicator=True), StandardScaler()
                ),
                list(NUMERIC),
            ),
            ("onehot", OneHotEncoder(handle_unknown="ignore"), list(LOCATION_LEVELS)),
        ],
        verbose_feature_names_out=True,
    )
    return Pipeline(
        [("features", ListingFeatureBuilder()), ("encode", encode), ("model", Ridge(alpha=1.0))]
    )


def _residual_trees(seed: int) -> Pipeline:
    """Small trees on what the ridge left: a state's level or the value of size after a drift.
    Few, large leaves: they correct regions, they do not learn single zips again."""
    encode = ColumnTransformer(
        [
            ("numeric", "passthrough", list(NUMERIC)),
            (
                "ordinal",
                _ordinal(),
                ["status", "state", "city"],
            ),
        ],
        verbose_feature_names_out=True,
    )
    estimator = HistGradientBoostingRegressor(
        learning_rate=0.05,
        max_iter=300,
        max_leaf_nodes=15,
        min_samples_leaf=80,
        l2_regularization=1.0,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=20,
        random_state=seed,
    )
    return Pipeline(
        [("features", ListingFeatureBuilder()), ("encode", encode), ("model", estimator)]
    )


def _ordinal() -> OrdinalEncoder:
    """Category codes for trees; unseen and missing categories are NaN (HGB's missing branch)."""
    return OrdinalEncoder(
        handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan
    )


def recency_weights(batch_ids: pd.Series, half_life: float) -> np.ndarray:
    """Weight 1 for the newest batch, halving every ``half_life`` batches back."""
    ranks = batch_ids.rank(method="dense").to_numpy()
    age = ranks.max() - ranks
    return np.power(0.5, age / half_life)


def validation_mask(row_keys: pd.Series) -> np.ndarray:
    """Validation rows are a pure function of the row, like the train/test split."""
    return uniform(row_keys, slice(-8, None)) < VALIDATION_FRACTION


@dataclass
class Candidate:
    family: str
    model: Any
    validation: dict[str, float]


def _fit(family: str, frame: pd.DataFrame, weights: np.ndarray, seed: int) -> Any:
    model = build_model(family, seed)
    weight = "sample_weight" if isinstance(model, LinearTrees) else "model__sample_weight"
    model.fit(frame[list(FEATURES)], frame[TARGET].to_numpy(), **{weight: weights})
    return model


def fit_candidates(
    train: pd.DataFrame, *, seed: int, half_life: float, families: tuple[str, ...]
) -> list[Candidate]:
    """Fit each family on the train split minus a validation slice (at most SELECTION_ROWS of
    it); score on that slice (at most VALIDATION_ROWS)."""
    train = train.assign(_weight=recency_weights(train["batch_id"], half_life))
    held = validation_mask(train["row_key"])
    fit_rows = at_most(train[~held], SELECTION_ROWS)
    valid_rows = at_most(train[held], VALIDATION_ROWS)
    weights, valid_weights = fit_rows["_weight"].to_numpy(), valid_rows["_weight"].to_numpy()
    candidates = []
    for family in families:
        model = _fit(family, fit_rows, weights, seed)
        predicted = model.predict(valid_rows[list(FEATURES)])
        scores = regression_metrics(
            valid_rows[TARGET].to_numpy(), predicted, sample_weight=valid_weights
        )
        log.info("candidate %s: validation MAE %.0f, R² %.3f", family, scores["mae"], scores["r2"])
        candidates.append(Candidate(family, model, scores))
    return candidates


def choose(candidates: list[Candidate]) -> Candidate:
    """Lowest validation MAE wins; ties go to the earlier (simpler) family."""
    return min(candidates, key=lambda c: c.validation["mae"])


def fit_family(family: str, train: pd.DataFrame, *, seed: int, half_life: float) -> Any:
    """The chosen family fitted on the whole train split (validation rows included)."""
    weights = recency_weights(train["batch_id"], half_life)
    return _fit(family, train, weights, seed)
