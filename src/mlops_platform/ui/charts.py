"""Altair charts of the UI: each takes a DataFrame (or dict) and returns a chart, nothing else."""

from __future__ import annotations

import math
from typing import Any

import altair as alt
import pandas as pd

# A batch's rows: clean as received, clean once optional fields were set to null, rejected.
ROW_KINDS = ("clean as received", "repaired", "rejected")
ROW_COLORS = alt.Scale(domain=list(ROW_KINDS), range=["#2e7d32", "#f9a825", "#c62828"])
# `superseded`: a run for data older than data already decided (it never trains or promotes).
OUTCOME_COLORS = alt.Scale(
    domain=["promoted", "rejected", "skipped", "superseded"],
    range=["#2e7d32", "#c62828", "#9e9e9e", "#8d6e63"],
)


def metrics_frame(history: pd.DataFrame) -> pd.DataFrame:
    """Long frame (version, metric, value, outcome) of the trained candidates' test metrics."""
    trained = history[history["candidate_version"].notna()]
    rows = []
    for _, row in trained.iterrows():
        metrics = row["candidate_metrics"] or {}
        for metric in ("mae", "r2"):
            if metric in metrics and metrics[metric] is not None:
                rows.append(
                    {
                        "version": int(row["candidate_version"]),
                        "metric": metric.upper() if metric == "mae" else "R²",
                        "value": float(metrics[metric]),
                        "outcome": row["outcome"],
                        "data": row["data_version"],
                    }
                )
    return pd.DataFrame(rows, columns=["version", "metric", "value", "outcome", "data"])


def metric_over_versions(history: pd.DataFrame, metric: str) -> alt.Chart:
    """One test metric (``MAE`` or ``R²``) of each candidate over versions, coloured by decision."""
    frame = metrics_frame(history)
    frame = frame[frame["metric"] == metric]
    present = [o for o in OUTCOME_COLORS.domain if o in set(frame["outcome"])]
    colours = [OUTCOME_COLORS.range[OUTCOME_COLORS.domain.index(o)] for o in present]
    base = alt.Chart(frame, title=metric).encode(
        x=alt.X("version:O", title="model version", axis=alt.Axis(labelAngle=0)),
        y=alt.Y(
            "value:Q",
            title=metric,
            scale=alt.Scale(zero=False),
            axis=alt.Axis(format="$,.0f" if metric == "MAE" else ".2f"),
        ),
    )
    line = base.mark_line(color="#90a4ae")
    points = base.mark_point(filled=True, size=110).encode(
        color=alt.Color(
            "outcome:N", scale=alt.Scale(domain=present, range=colours), title="decision"
        ),
        tooltip=["version", "data", alt.Tooltip("value:Q", format=",.3f"), "outcome"],
    )
    return alt.layer(line, points).properties(height=260)


def importance_bars(importance: pd.DataFrame, title: str) -> alt.Chart:
    """Horizontal bars of mean |SHAP| per field."""
    return (
        alt.Chart(importance, title=title)
        .mark_bar()
        .encode(
            x=alt.X("importance:Q", title="mean |SHAP| (log price)"),
            y=alt.Y("feature:N", sort="-x", title=None),
            tooltip=["feature", alt.Tooltip("importance:Q", format=".4f")],
        )
    )


def importance_comparison(current: pd.DataFrame, previous: pd.DataFrame, labels: tuple[str, str]):
    """Both versions' importance per field side by side (grouped bars)."""
    frame = pd.concat(
        [current.assign(version=labels[0]), previous.assign(version=labels[1])], ignore_index=True
    )
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            y=alt.Y("feature:N", sort=list(current["feature"]), title=None),
            yOffset="version:N",
            x=alt.X("importance:Q", title="mean |SHAP| (log price)"),
            color=alt.Color("version:N", title=None),
            tooltip=["version", "feature", alt.Tooltip("importance:Q", format=".4f")],
        )
    )


def waterfall_frame(explanation: dict[str, Any]) -> pd.DataFrame:
    """Steps from the base value to the prediction, biggest contributions first, in dollars
    at each step (contributions add up in log(price); the axis shows what they mean in $)."""
    steps = sorted(explanation["contributions"].items(), key=lambda item: -abs(item[1]))
    level = explanation["base_value"]
    rows = []
    for feature, value in steps:
        start, level = level, level + value
        rows.append(
            {
                "feature": feature,
                "start": math.exp(start),
                "end": math.exp(level),
                "shap": value,
                "effect": "raises" if value >= 0 else "lowers",
            }
        )
    return pd.DataFrame(rows, columns=["feature", "start", "end", "shap", "effect"])


def waterfall(explanation: dict[str, Any]) -> alt.Chart:
    """SHAP waterfall of one prediction: from the average price to this listing's."""
    frame = waterfall_frame(explanation)
    order = list(frame["feature"])
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            y=alt.Y("feature:N", sort=order, title=None),
            x=alt.X("start:Q", title="price (US$)", scale=alt.Scale(zero=False)),
            x2="end:Q",
            color=alt.Color(
                "effect:N",
                scale=alt.Scale(domain=["raises", "lowers"], range=["#c62828", "#1565c0"]),
                title=None,
            ),
            tooltip=[
                "feature",
                alt.Tooltip("shap:Q", format="+.4f", title="SHAP (log price)"),
                alt.Tooltip("start:Q", format="$,.0f"),
                alt.Tooltip("end:Q", format="$,.0f"),
            ],
        )
    )


def batch_rows_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """Long frame (batch_id, kind, rows) of each batch's rows by ROW_KINDS; the repaired rows are
    among the cleaned ones, so they are taken out of "clean as received" and the bar adds up."""
    kinds = pd.DataFrame(
        {
            "batch_id": summary["batch_id"],
            ROW_KINDS[0]: summary["cleaned"] - summary["repaired"].fillna(0),
            ROW_KINDS[1]: summary["repaired"],
            ROW_KINDS[2]: summary["rejected"],
        }
    )
    frame = kinds.melt(id_vars=["batch_id"], var_name="kind", value_name="rows").dropna()
    return frame.astype({"rows": int})


def batch_rows(summary: pd.DataFrame) -> alt.Chart:
    """Rows of each batch clean as received, repaired and rejected, stacked."""
    return (
        alt.Chart(batch_rows_frame(summary))
        .mark_bar()
        .encode(
            x=alt.X("batch_id:O", title="batch", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("rows:Q", stack=True),
            color=alt.Color("kind:N", scale=ROW_COLORS, sort=list(ROW_KINDS)),
            tooltip=["batch_id", "kind", "rows"],
        )
    )


def drift_frame(history: pd.DataFrame) -> pd.DataFrame:
    """PSI per feature at each decision (the newest batch against the production model's data)."""
    rows = [
        {"batch": int(row["max_batch_id"]), "feature": feature, "psi": float(stats.get("psi", 0.0))}
        for _, row in history.iterrows()
        for feature, stats in (row["drift"] or {}).items()
    ]
    return pd.DataFrame(rows, columns=["batch", "feature", "psi"])


def drift_heatmap(history: pd.DataFrame, threshold: float) -> alt.Chart:
    frame = drift_frame(history)
    return (
        alt.Chart(frame)
        .mark_rect()
        .encode(
            x=alt.X("batch:O", title="newest batch at the decision", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("feature:N", title=None),
            color=alt.Color(
                "psi:Q", scale=alt.Scale(scheme="orangered", domainMid=threshold), title="PSI"
            ),
            tooltip=["batch", "feature", alt.Tooltip("psi:Q", format=".3f")],
        )
        .properties(height=alt.Step(28))
    )


def traffic(inferences: pd.DataFrame) -> alt.Chart:
    """Predictions per minute by model version (times in UTC, 24-hour clock)."""
    frame = inferences.assign(minute=inferences["logged_at"].dt.floor("min"))
    counts = frame.groupby(["minute", "model_version"]).size().reset_index(name="predictions")
    return (
        alt.Chart(counts)
        .mark_bar(width={"band": 0.8})
        .encode(
            x=alt.X("utchoursminutes(minute):O", title="minute (UTC)", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("predictions:Q", axis=alt.Axis(tickMinStep=1)),
            color=alt.Color("model_version:N", title="version"),
            tooltip=[
                alt.Tooltip("minute:T", format="%Y-%m-%d %H:%M"),
                "model_version",
                "predictions",
            ],
        )
    )
