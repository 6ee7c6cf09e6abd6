"""Streamlit entry page: where the platform stands (the API's model)."""

from __future__ import annotations

import httpx
import streamlit as st

from mlops_platform.settings import load_settings

settings = load_settings()
st.set_page_config(page_title="House prices · MLOps", layout="wide")
st.title("House prices")
try:
    model = httpx.get(f"{settings.api_url}/model", timeout=5).raise_for_status().json()
except httpx.HTTPError as error:
    st.warning(f"The inference API at {settings.api_url} is not answering ({error}).")
else:
    st.write(model)
