"""Explainability: what drives the production model (global SHAP importance), compared with an
earlier version, next to the drift that made the pipeline train a new one."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from mlflow.exceptions import MlflowException

from mlops_platform.ui import charts, context

settings = context.settings()
st.title("What drives the model")
history = context.guarded(
    lambda: context.model_history(settings.clean_url), "CLEAN", settings.clean_url
)
explained = history[history["shap_uri"].notna() & history["candidate_version"].notna()]
if explained.empty:
    st.info("No model with SHAP values yet: the modeling pipeline's explain task writes them.")
    st.stop()

try:
    serving = context.production_version(
        settings.mlflow_tracking_uri, settings.model_name, settings.model_alias
    )
except MlflowException as error:
    st.error(f"MLflow at {settings.mlflow_tracking_uri} could not answer: {error.message}")
    st.stop()
versions = [str(v) for v in explained["candidate_version"]][::-1]  # newest first
current = serving if serving in versions else versions[0]
others = [v for v in versions if v != current]


def row_of(version: str) -> pd.Series:
    return explained[explained["candidate_version"].astype(str) == version].iloc[-1]


def importance(version: str) -> pd.DataFrame:
    try:
        return context.shap_importance(settings.mlflow_tracking_uri, row_of(version)["shap_uri"])
    except (MlflowException, OSError) as error:
        st.error(f"Cannot read the SHAP values of version {version} from MLflow: {error}")
        st.stop()
        raise  # unreachable


def drift_note(version: str) -> None:
    row = row_of(version)
    drifted = row["drifted_features"] or {}
    st.markdown(f"**Trained on {row['data_version']}** ({row['outcome']}): {row['reason']}")
    if drifted:
        listed = ", ".join(f"`{name}` (PSI {psi:.2f})" for name, psi in drifted.items())
        st.markdown(f"Drifted features when it was trained: {listed}")
    else:
        st.markdown("No feature had drifted when it was trained.")


label = "production" if current == serving else "newest"
st.caption(f"Version {current} ({label}). Mean |SHAP| per listing field, in log price.")
current_importance = importance(current)
if not others:
    st.altair_chart(charts.importance_bars(current_importance, f"v{current}"), width="stretch")
    drift_note(current)
    st.info("Only one version has SHAP values: a comparison needs a second trained version.")
    st.stop()

previous = st.selectbox("Compare with version", others, index=0)
previous_importance = importance(previous)
st.altair_chart(
    charts.importance_comparison(
        current_importance, previous_importance, (f"v{current}", f"v{previous}")
    ),
    width="stretch",
)
left, right = st.columns(2)
with left:
    st.subheader(f"v{current}")
    drift_note(current)
with right:
    st.subheader(f"v{previous}")
    drift_note(previous)

change = current_importance.merge(previous_importance, on="feature", suffixes=("_now", "_before"))
change["change"] = change["importance_now"] - change["importance_before"]
st.subheader("Biggest changes in importance")
st.dataframe(
    change.sort_values("change", key=abs, ascending=False).head(5),
    hide_index=True,
    column_config={
        "importance_now": st.column_config.NumberColumn(f"v{current}", format="%.4f"),
        "importance_before": st.column_config.NumberColumn(f"v{previous}", format="%.4f"),
        "change": st.column_config.NumberColumn(format="%+.4f"),
    },
)
