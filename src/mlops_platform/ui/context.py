"""Streamlit glue shared by the pages: settings, cached engines and cached reads.

Settings are read on every run (cheap, and a test can change the environment); engines are cached
per URL; query results for ``ttl`` seconds, so moving between pages does not hit the databases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pandas as pd
import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from mlops_platform.settings import Settings, SettingsError, load_settings
from mlops_platform.ui import artifacts, stores

TTL_S = 30
T = TypeVar("T")


def settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as error:
        st.error(f"The UI's settings are invalid:\n\n{error}\n\nFix the MLOPS_* variable(s).")
        st.stop()
        raise  # unreachable: st.stop() ends the run


@st.cache_resource(show_spinner=False)
def engine(url: str) -> Engine:
    return stores.read_only_engine(url)


def where(url: str) -> str:
    """``host:port/database`` of a URL, without credentials, for messages."""
    parsed = make_url(url)
    host = parsed.host or parsed.query.get("host", "localhost")
    return f"{host}:{parsed.port or 5432}/{parsed.database}"


def guarded(read: Callable[[], T], store: str, url: str) -> T:
    """Run a read; a database error becomes a message on the page, and the page stops."""
    try:
        return read()
    except SQLAlchemyError as error:
        reason = str(error.orig if getattr(error, "orig", None) else error).splitlines()[0]
        st.error(
            f"Cannot read the {store} store at {where(url)}: {reason}. Is PostgreSQL up and "
            "migrated (`mlops db upgrade`), and may this user read it?"
        )
        st.stop()
        raise  # unreachable


@st.cache_data(ttl=TTL_S, show_spinner="Reading the model history...")
def model_history(clean_url: str) -> pd.DataFrame:
    return stores.model_history(engine(clean_url))


@st.cache_data(ttl=TTL_S, show_spinner="Reading batches...")
def batch_summary(raw_url: str, clean_url: str) -> pd.DataFrame:
    return stores.batch_summary(engine(raw_url), engine(clean_url))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def rejections(clean_url: str) -> pd.DataFrame:
    return stores.rejections(engine(clean_url))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def repairs_by_rule(clean_url: str) -> pd.DataFrame:
    return stores.repairs_by_rule(engine(clean_url))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def repair_examples(clean_url: str) -> pd.DataFrame:
    return stores.repair_examples(engine(clean_url))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def recent_inferences(raw_url: str) -> pd.DataFrame:
    return stores.recent_inferences(engine(raw_url))


@st.cache_data(ttl=300, show_spinner="Reading SHAP values from MLflow...")
def shap_importance(tracking_uri: str, shap_uri: str) -> pd.DataFrame:
    """Artifacts of a run never change: cached longer."""
    return artifacts.shap_importance(tracking_uri, shap_uri)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def production_version(tracking_uri: str, model_name: str, alias: str) -> str | None:
    return artifacts.production_version(tracking_uri, model_name, alias)
