"""Streamlit entry point (`mlops serve ui`): the four pages and the API status in the sidebar."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from mlops_platform.ui import api, context

PAGES = Path(__file__).with_name("pages")

st.set_page_config(page_title="House prices · MLOps", page_icon="🏠", layout="wide")
navigation = st.navigation(
    [
        st.Page(PAGES / "predict.py", title="Predict", icon="💲", default=True),
        st.Page(PAGES / "models.py", title="Models", icon="📈"),
        st.Page(PAGES / "explainability.py", title="Explainability", icon="🔍"),
        st.Page(PAGES / "data.py", title="Data", icon="🗃️"),
    ]
)

settings = context.settings()
with st.sidebar:
    st.caption("Inference API")
    try:
        served = api.model_info(settings.api_url, timeout_s=3)
    except api.ApiProblem as problem:
        st.warning(str(problem), icon="⚠️")
    else:
        st.success(f"Serving {served['name']} v{served['version']} ({served.get('family')})")
    st.caption(f"API {settings.api_url} · MLflow {settings.mlflow_tracking_uri}")

navigation.run()
