"""Predict: a listing form (from the schema) → price, model version and SHAP waterfall, all
through the inference API."""

from __future__ import annotations

import math

import streamlit as st

from mlops_platform.ui import api, charts, context, form

settings = context.settings()
st.title("Predict a house price")
st.write(
    "Describe a listing; the inference API prices it with the production model and explains why."
)

values = st.session_state.setdefault("predict_values", form.defaults())
st.session_state.setdefault("predict_record", form.to_record(values))  # priced as it opens
errors: dict[str, str] = st.session_state.get("predict_errors", {})

with st.form("listing"):
    columns = st.columns(3)
    entered = {}
    for index, field in enumerate(form.FIELDS):
        with columns[index % 3]:
            label = field.label + (" *" if field.required else "")
            current = values.get(field.name)
            key = f"field_{field.name}"
            if field.kind == "select":
                options = list(field.options)
                entered[field.name] = st.selectbox(
                    label,
                    options,
                    index=options.index(current) if current in options else 0,
                    help=field.help,
                    key=key,
                )
            elif field.kind == "int":
                entered[field.name] = st.number_input(
                    label,
                    min_value=0,
                    max_value=20,
                    value=current,
                    step=1,
                    help=field.help,
                    key=key,
                )
            elif field.kind == "float":
                entered[field.name] = st.number_input(
                    label,
                    min_value=0.0,
                    format=field.format,
                    value=None if current is None else float(current),
                    help=field.help,
                    key=key,
                )
            elif field.kind == "date":
                entered[field.name] = st.date_input(label, value=current, help=field.help, key=key)
            else:
                entered[field.name] = st.text_input(
                    label, value=current or "", help=field.help, key=key
                )
            if field.name in errors:
                st.error(errors[field.name], icon="✋")
    submitted = st.form_submit_button("Predict price", type="primary")

if submitted:
    record = form.to_record(entered)
    st.session_state["predict_values"] = entered
    st.session_state["predict_errors"] = form.validate(record)
    st.session_state["predict_record"] = None if st.session_state["predict_errors"] else record
    st.rerun()

if errors:
    st.warning("Fix the fields marked above, then predict again.")
record = st.session_state.get("predict_record")
if record:
    try:
        prediction = api.predict(settings.api_url, record)
    except api.ApiProblem as problem:
        st.error(str(problem))
        st.stop()
    model = prediction.model
    left, right = st.columns([1, 2])
    left.metric("Predicted price", f"${prediction.price:,.0f}")
    left.caption(
        f"Model **{model['name']}** version **{model['version']}** (run `{model['run_id']}`)"
    )
    try:
        explanation = api.explain(settings.api_url, record)
    except api.ApiProblem as problem:
        right.info(f"No explanation: {problem}")
    else:
        right.subheader("Why this price")
        right.caption(
            f"From the average listing (${math.exp(explanation['base_value']):,.0f}), each field "
            "moves the price; the largest effects first (SHAP, computed in log price)."
        )
        right.altair_chart(charts.waterfall(explanation), width="stretch")
