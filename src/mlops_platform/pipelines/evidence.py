"""Evidence before promotion: is a candidate's advantage bigger than the noise of the test rows?

House prices are heavy-tailed: on a few hundred test rows, one expensive listing moves the MAE
by a percent or more. So two models are compared on the *same* rows (paired), and the advantage
counts only when a bootstrap over those rows keeps it above zero at the stated confidence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import GammaRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlops_platform.schema import FEATURES, TARGET

# Bootstrap resamples of the rows, drawn in chunks to bound memory on large test sets.
RESAMPLES = 2000
_CHUNK = 200
# The original system's GLM: the numbers scaled, status and state one-hot, the rest dropped.
ORIGINAL_NUMBERS: tuple[str, ...] = ("bed", "bath", "acre_lot", "house_size")
ORIGINAL_CATEGORIES: tuple[str, ...] = ("status", "state")
# Where the naive baseline looks up a listing's price, most specific first.
LOCATION_LEVELS: tuple[tuple[str, ...], ...] = (
    ("state", "zip_code"),
    ("state", "city"),
    ("state",),
)


@dataclass(frozen=True)
class PairedGain:
    """The candidate's MAE gain over a reference on the same rows: ``1 - MAE_c / MAE_r``, with
    its one-sided lower bound at ``confidence`` (above zero: the advantage is not noise)."""

    gain: float
    low: float
    confidence: float
    rows: int

    def holds(self) -> bool:
        return self.low > 0

    def describe(self) -> str:
        return f"{self.gain:+.1%} (≥ {self.low:+.1%} at {self.confidence:.0%}, {self.rows} rows)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_gain(
    y_true: np.ndarray,
    candidate: np.ndarray,
    reference: np.ndarray,
    *,
    confidence: float,
    seed: int = 0,
) -> PairedGain:
    """Bootstrap the rows (the same draw for both models) and take the gain's lower quantile."""
    return paired_gains(
        y_true, candidate, {"reference": reference}, confidence=confidence, seed=seed
    )["reference"]


def paired_gains(
    y_true: np.ndarray,
    candidate: np.ndarray,
    references: dict[str, np.ndarray],
    *,
    confidence: float,
    seed: int = 0,
) -> dict[str, PairedGain]:
    """:func:`paired_gain` against each reference, from one set of draws (the same draws each
    call of :func:`paired_gain` makes, so the same numbers), each resample's candidate error
    computed once."""
    truth = np.asarray(y_true, dtype=float)
    own = np.abs(truth - np.asarray(candidate, dtype=float))
    others = {
        name: np.abs(truth - np.asarray(reference, dtype=float))
        for name, reference in references.items()
    }
    rows = len(truth)
    if rows == 0:
        return {name: PairedGain(0.0, 0.0, confidence, 0) for name in references}
    rng = np.random.default_rng(seed)
    gains: dict[str, list[np.ndarray]] = {name: [] for name in references}
    for start in range(0, RESAMPLES, _CHUNK):
        draw = rng.integers(0, rows, size=(min(_CHUNK, RESAMPLES - start), rows))
        own_mean = own[draw].mean(axis=1)
        for name, other in others.items():
            gains[name].append(1 - own_mean / np.maximum(other[draw].mean(axis=1), 1e-9))
    return {
        name: PairedGain(
            float(1 - own.mean() / max(other.mean(), 1e-9)),
            float(np.quantile(np.concatenate(gains[name]), 1 - confidence)),
            confidence,
            rows,
        )
        for name, other in others.items()
    }


def location_median(train: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray:
    """The naive baseline: the median train price of the same zip code, else of the same city,
    else of the same state, else of every train row."""
    predicted = pd.Series(np.nan, index=rows.index)
    for keys in LOCATION_LEVELS:
        medians = train.groupby(list(keys))[TARGET].median()
        found = pd.MultiIndex.from_frame(rows[list(keys)]) if len(keys) > 1 else rows[keys[0]]
        looked_up = pd.Series(medians.reindex(found).to_numpy(), index=rows.index)
        predicted = predicted.fillna(looked_up)
    return predicted.fillna(float(train[TARGET].median())).to_numpy()


def original_glm(train: pd.DataFrame, rows: pd.DataFrame, alpha: float = 1.0) -> np.ndarray:
    """The original system's model, fitted on ``train`` and predicting ``rows``: a Gamma GLM
    (log link, default penalty) on scaled numbers (missing ones at the median) and one-hot status
    and state, the high-cardinality columns dropped. What this platform replaces must at least
    be beaten."""
    encode = ColumnTransformer(
        [
            (
                "numbers",
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                list(ORIGINAL_NUMBERS),
            ),
            ("categories", OneHotEncoder(handle_unknown="ignore"), list(ORIGINAL_CATEGORIES)),
        ]
    )
    model = make_pipeline(encode, GammaRegressor(alpha=alpha, max_iter=1000))
    model.fit(train[list(FEATURES)], train[TARGET].to_numpy())
    return np.asarray(model.predict(rows[list(FEATURES)]), dtype=float)
