"""The retrain decision: has the data moved away from what the production model learned?

New clean rows are compared with the rows the production model was trained on, feature by
feature (PSI and the Kolmogorov–Smirnov statistic for numbers, PSI for categories), together with
how much new data arrived and how well the production model does on it. The decision carries its
reasons in words.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

DRIFT_NUMERIC: tuple[str, ...] = ("price", "house_size", "acre_lot", "bed", "bath")
DRIFT_CATEGORICAL: tuple[str, ...] = ("state", "status")
_BINS = 10
_TOP_CATEGORIES = 20
_EPSILON = 1e-4


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index between two histograms (counts)."""
    e = np.clip(expected / max(expected.sum(), 1), _EPSILON, None)
    a = np.clip(actual / max(actual.sum(), 1), _EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_drift(reference: pd.Series, current: pd.Series) -> dict[str, float]:
    ref, cur = reference.dropna().to_numpy(float), current.dropna().to_numpy(float)
    if len(ref) < _BINS or len(cur) < _BINS:
        return {"psi": 0.0, "ks": 0.0, "ks_pvalue": 1.0}
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, _BINS + 1)))
    edges[0], edges[-1] = -np.inf, np.inf
    ks = stats.ks_2samp(ref, cur)
    return {
        "psi": psi(np.histogram(ref, edges)[0], np.histogram(cur, edges)[0]),
        "ks": float(ks.statistic),
        "ks_pvalue": float(ks.pvalue),
    }


def categorical_drift(reference: pd.Series, current: pd.Series) -> dict[str, float]:
    ref = reference.fillna("<missing>").astype(str)
    cur = current.fillna("<missing>").astype(str)
    top = ref.value_counts().index[:_TOP_CATEGORIES]
    ref_counts = ref.where(ref.isin(top), "<other>").value_counts()
    cur_counts = cur.where(cur.isin(top), "<other>").value_counts()
    categories = ref_counts.index.union(cur_counts.index)
    return {
        "psi": psi(
            ref_counts.reindex(categories, fill_value=0).to_numpy(float),
            cur_counts.reindex(categories, fill_value=0).to_numpy(float),
        )
    }


def feature_drift(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, dict[str, float]]:
    report = {name: numeric_drift(reference[name], current[name]) for name in DRIFT_NUMERIC}
    report.update(
        {name: categorical_drift(reference[name], current[name]) for name in DRIFT_CATEGORICAL}
    )
    return report


@dataclass(frozen=True)
class Thresholds:
    psi: float
    error_ratio: float
    new_rows_ratio: float
    min_new_rows: int


@dataclass
class Decision:
    """Whether to train, and why, with the evidence."""

    retrain: bool
    reasons: list[str]
    reference_rows: int = 0
    new_rows: int = 0
    drift: dict[str, dict[str, float]] = field(default_factory=dict)
    drifted: dict[str, float] = field(default_factory=dict)
    production_mae_reference: float | None = None
    production_mae_new: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def first_model(new_rows: int) -> Decision:
    """With no production model there is nothing to compare: train."""
    return Decision(True, ["no production model yet"], 0, new_rows)


def decide(
    reference: pd.DataFrame | None,
    new: pd.DataFrame,
    thresholds: Thresholds,
    *,
    latest: pd.DataFrame | None = None,
    production_mae_reference: float | None = None,
    production_mae_new: float | None = None,
) -> Decision:
    """Retrain with no production model, on drift, on degraded error, or on enough new rows.

    Drift is measured on ``latest`` (the newest batch) when given: older new rows that did not
    call for a model would otherwise dilute a fresh shift. Volume and error use all new rows.
    """
    if reference is None:
        return first_model(len(new))
    if len(new) < thresholds.min_new_rows:
        return Decision(
            False,
            [
                f"only {len(new)} new clean rows since the production model's data "
                f"(fewer than {thresholds.min_new_rows})"
            ],
            len(reference),
            len(new),
        )
    drift = feature_drift(reference, new if latest is None else latest)
    drifted = {
        name: round(values["psi"], 3)
        for name, values in drift.items()
        if values["psi"] > thresholds.psi
    }
    reasons = []
    if drifted:
        listed = ", ".join(f"{name} (PSI {value:.2f})" for name, value in drifted.items())
        reasons.append(f"data drift above PSI {thresholds.psi:g} in {listed}")
    if production_mae_reference and production_mae_new is not None:
        ratio = production_mae_new / production_mae_reference
        if ratio > thresholds.error_ratio:
            reasons.append(
                f"production MAE on the new rows is {ratio:.2f}× its test MAE "
                f"({production_mae_new:,.0f} vs {production_mae_reference:,.0f})"
            )
    share = len(new) / max(len(reference), 1)
    if share >= thresholds.new_rows_ratio:
        reasons.append(
            f"{len(new)} new rows, {share:.0%} of the {len(reference)} the production model "
            "was trained on"
        )
    retrain = bool(reasons)
    if not retrain:
        reasons.append(
            f"no drift (largest PSI {max(v['psi'] for v in drift.values()):.2f}), error stable, "
            f"{len(new)} new rows ({share:.0%} of training data): keeping the production model"
        )
    return Decision(
        retrain,
        reasons,
        len(reference),
        len(new),
        drift,
        drifted,
        production_mae_reference,
        production_mae_new,
    )
