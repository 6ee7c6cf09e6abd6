"""Models: every training decision from clean_data.model_history — what was promoted, what was
rejected, skipped or superseded (a run for data older than data already decided), and why — and
how the candidates' metrics moved over versions."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from mlops_platform.ui import charts, context

settings = context.settings()
st.title("Model history")
history = context.guarded(
    lambda: context.model_history(settings.clean_url), "CLEAN", settings.clean_url
)
if history.empty:
    st.info(
        "No training decision yet. The modeling pipeline records one per new data version "
        "(Airflow's modeling_pipeline, or `mlops pipeline run model`)."
    )
    st.stop()

production = history.loc[history["promoted"], "candidate_version"].dropna()
trained = history["candidate_version"].notna()
first, second, third, fourth = st.columns(4)
first.metric("Decisions", len(history))
second.metric("Models trained", int(trained.sum()))
third.metric("Promoted", int(history["promoted"].sum()))
fourth.metric("In production", f"v{production.iloc[-1]}" if len(production) else "none")


def metric(value: dict | None, key: str) -> float | None:
    return None if not value or value.get(key) is None else float(value[key])


table = pd.DataFrame(
    {
        "decided at (UTC)": history["decided_at"],
        "data": history["data_version"],
        "up to batch": history["max_batch_id"],
        "new rows": history["new_rows"],
        "trained": history["retrain"].map({True: "trained", False: "skipped"}),
        "candidate": history["candidate_version"].fillna("—"),
        "family": history["candidate_family"].fillna("—"),
        "outcome": history["outcome"],
        "reason": history["reason"],
        "candidate MAE": history["candidate_metrics"].map(lambda m: metric(m, "mae")),
        "production MAE": history["production_metrics"].map(lambda m: metric(m, "mae")),
        "candidate R²": history["candidate_metrics"].map(lambda m: metric(m, "r2")),
        "production R²": history["production_metrics"].map(lambda m: metric(m, "r2")),
        "against": history["production_version"].fillna("—"),
    }
).iloc[::-1]

st.subheader("Every decision, newest first")
st.dataframe(
    table,
    hide_index=True,
    column_config={
        "decided at (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        "candidate MAE": st.column_config.NumberColumn(format="$%,.0f"),
        "production MAE": st.column_config.NumberColumn(format="$%,.0f"),
        "candidate R²": st.column_config.NumberColumn(format="%.3f"),
        "production R²": st.column_config.NumberColumn(format="%.3f"),
        "reason": st.column_config.TextColumn(width="large"),
    },
)

st.subheader("Candidates' test metrics over versions")
st.caption("Each trained candidate on the newest test rows; green ones were promoted.")
if trained.any():
    left, right = st.columns(2)
    left.altair_chart(charts.metric_over_versions(history, "MAE"), width="stretch")
    right.altair_chart(charts.metric_over_versions(history, "R²"), width="stretch")
else:
    st.info("No model trained yet: every decision so far was a skip.")

with st.expander("Why each decision trained or skipped", expanded=True):
    for _, row in history.iloc[::-1].iterrows():
        reasons = "; ".join(row["decision_reasons"] or [])
        st.markdown(f"**{row['data_version']}** ({row['outcome']}): {reasons}")
