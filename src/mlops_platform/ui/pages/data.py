"""Data: batches received, cleaned and rejected (by rule), optional fields repaired (by rule, with
examples of what the source sent), drift at each decision, and recent inference traffic from
raw_data.inference_logs."""

from __future__ import annotations

import streamlit as st

from mlops_platform.ui import charts, context

settings = context.settings()
st.title("Data")

summary = context.guarded(
    lambda: context.batch_summary(settings.raw_url, settings.clean_url), "RAW", settings.raw_url
)
if summary.empty:
    st.info(
        "No batch received yet. The data pipeline collects one per run (Airflow's "
        "data_pipeline, or `mlops pipeline run data`)."
    )
    st.stop()

first, second, third, fourth = st.columns(4)
first.metric("Batches", len(summary))
second.metric("Rows received", f"{int(summary['received'].sum()):,}")
repaired_total = int(summary["repaired"].fillna(0).sum())
third.metric("Rows repaired", f"{repaired_total:,}", help="kept, with optional fields set to null")
rejected_total = int(summary["rejected"].fillna(0).sum())
fourth.metric("Rows rejected", f"{rejected_total:,}")

st.subheader("Batches")
st.altair_chart(charts.batch_rows(summary), width="stretch")
st.dataframe(
    summary.iloc[::-1],
    hide_index=True,
    column_config={
        "batch_id": "batch",
        "batch_number": "number at source",
        "group_number": "group",
        "received_at": st.column_config.DatetimeColumn(
            "received at (UTC)", format="YYYY-MM-DD HH:mm:ss"
        ),
    },
)

st.subheader("Rejected rows by rule")
rejections = context.guarded(
    lambda: context.rejections(settings.clean_url), "CLEAN", settings.clean_url
)
if rejections.empty:
    st.write("No row was rejected.")
else:
    totals = rejections.groupby("rule", as_index=False)["rows"].sum()
    st.dataframe(totals.sort_values("rows", ascending=False), hide_index=True, height="content")
    with st.expander("Per batch"):
        st.dataframe(rejections, hide_index=True)

st.subheader("Repaired fields by rule")
st.caption(
    "An optional field that cannot be used (unreadable, impossible or out of range) is set to "
    "null and the row kept; a required one (price, status, city, state, zip code) rejects it."
)
repairs = context.guarded(
    lambda: context.repairs_by_rule(settings.clean_url), "CLEAN", settings.clean_url
)
if repairs.empty:
    st.write("No field was repaired.")
else:
    totals = repairs.groupby("rule", as_index=False)["rows"].sum()
    st.dataframe(totals.sort_values("rows", ascending=False), hide_index=True, height="content")
    with st.expander("Per batch"):
        st.dataframe(repairs, hide_index=True)
    examples = context.guarded(
        lambda: context.repair_examples(settings.clean_url), "CLEAN", settings.clean_url
    )
    st.write("Examples, newest first for each rule, with the text the source sent:")
    st.dataframe(
        examples,
        hide_index=True,
        column_config={
            "batch_id": "batch",
            "row_number": "row",
            "original": "as received",
        },
    )

st.subheader("Drift at each training decision")
history = context.guarded(
    lambda: context.model_history(settings.clean_url), "CLEAN", settings.clean_url
)
if history.empty:
    st.write("No decision yet: drift is measured when the modeling pipeline runs.")
else:
    st.caption(
        f"PSI of each feature, newest batch against the production model's training rows; "
        f"above {settings.drift_psi_threshold} counts as drift."
    )
    st.altair_chart(charts.drift_heatmap(history, settings.drift_psi_threshold), width="stretch")

st.subheader("Recent inference traffic")
inferences = context.guarded(
    lambda: context.recent_inferences(settings.raw_url), "RAW", settings.raw_url
)
if inferences.empty:
    st.write("No prediction served yet.")
else:
    first, second, third = st.columns(3)
    first.metric("Predictions (latest)", f"{len(inferences):,}")
    second.metric("Median latency", f"{inferences['latency_ms'].median():.1f} ms")
    third.metric("Median price", f"${inferences['prediction'].median():,.0f}")
    st.altair_chart(charts.traffic(inferences), width="stretch")
