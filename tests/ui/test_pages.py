"""Every page of the UI run by Streamlit's AppTest against the seeded platform
(tests/ui/conftest.py): what a person sees, including the API-down and no-model states."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from mlops_platform.serving.app import create_app
from mlops_platform.storage.engine import make_engine
from mlops_platform.storage.tables import batches, inference_logs, model_history, repairs
from mlops_platform.ui import app as ui_app
from tests import support
from tests.conftest import Stores
from tests.ui.conftest import Platform, closed_port_url

pytestmark = pytest.mark.integration

APP = str(Path(ui_app.__file__))


def run(page: str | None = None) -> AppTest:
    """The app as a browser session would run it, on ``page`` (pages/NAME.py). Settings come
    from os.environ at every run, like the real app: set them before, keep them after."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    if page:
        at.switch_page(f"pages/{page}.py")
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += (
        [e.value for e in at.error] + [w.value for w in at.warning] + [i.value for i in at.info]
    )
    parts += [s.value for s in at.success]
    return "\n".join(str(p) for p in parts)


def charts(at: AppTest) -> list:
    """The page's Altair charts (AppTest has no typed accessor for them)."""
    return at.get("vega_lite_chart")


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def count(url: str, table) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(table)).scalar_one()
    finally:
        engine.dispose()


def read(url: str, query) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(query).all()
    finally:
        engine.dispose()


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    """st.cache_data lives in this process across AppTests: each test reads its own state."""
    import streamlit as st

    st.cache_data.clear()
    yield
    st.cache_data.clear()


def test_sidebar_shows_the_served_model(platform_env: Platform) -> None:
    at = run()
    served = platform_env.history[0]["candidate_version"]
    assert any("Serving" in s.value for s in at.sidebar.success), texts(at)
    assert platform_env.settings.model_name in texts(at)
    assert served  # the first decision trained and promoted a model


def test_predict_shows_price_version_and_waterfall(platform_env: Platform) -> None:
    at = run()
    assert at.title[0].value == "Predict a house price"
    assert at.selectbox(key="field_state").value == "Texas"  # the schema's example listing
    at.button[0].click().run()
    assert not at.exception
    price = metric(at, "Predicted price")
    assert price.startswith("$")
    assert float(price.strip("$").replace(",", "")) > 1000
    assert f"version **{_production(platform_env)}**" in texts(at)
    assert "Why this price" in [h.value for h in at.subheader]
    assert charts(at), "the SHAP waterfall chart"


def _production(platform: Platform) -> str:
    promoted = [h["candidate_version"] for h in platform.history if h["outcome"] == "promoted"]
    return promoted[-1]


def test_predict_validates_fields_inline(platform_env: Platform) -> None:
    at = run()
    at.text_input(key="field_zip_code").set_value("12a")
    at.text_input(key="field_city").set_value("")
    at.button[0].click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any(
        "zip" in e.lower() or "5 digits" in e.lower() or "digit" in e.lower() for e in errors
    ), errors
    assert len(errors) >= 2, errors  # zip code and city, each under its field
    assert not [m for m in at.metric if m.label == "Predicted price"]
    assert any("Fix the fields" in w.value for w in at.warning)


def test_predict_when_the_api_is_down(
    platform_env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = closed_port_url()
    monkeypatch.setenv("MLOPS_API_URL", down)
    at = run()
    assert any("not reachable" in w.value for w in at.sidebar.warning)
    at.button[0].click().run()
    assert not at.exception
    assert any("not reachable" in e.value and down in e.value for e in at.error), texts(at)


def test_predict_when_no_model_is_in_production(
    platform_env: Platform, stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = platform_env.settings.replace(
        model_name="ui_never_trained", raw_db_url=stores.raw_url, model_poll_interval_s=3600.0
    )
    with support.serve(create_app(settings)) as api_url:
        monkeypatch.setenv("MLOPS_API_URL", api_url)
        at = run()
        at.button[0].click().run()
    assert not at.exception
    assert any("no production model" in e.value for e in at.error), texts(at)


def test_models_page_tells_every_decision(platform_env: Platform) -> None:
    at = run("models")
    decisions = count(platform_env.settings.clean_url, model_history)
    assert decisions == len(platform_env.history)
    assert metric(at, "Decisions") == str(decisions)
    promoted = sum(h["outcome"] == "promoted" for h in platform_env.history)
    assert metric(at, "Promoted") == str(promoted)
    assert metric(at, "In production") == f"v{_production(platform_env)}"
    table = at.dataframe[0].value
    assert len(table) == decisions
    assert set(table["reason"]) == {h["reason"] for h in platform_env.history}
    assert set(table["outcome"]) == {h["outcome"] for h in platform_env.history}
    assert charts(at), "MAE/R² over versions"


def test_models_page_shows_a_rejected_candidate_and_why(platform_env: Platform) -> None:
    rejected = platform_env.history[-1]
    assert rejected["outcome"] == "rejected", rejected["reason"]
    at = run("models")
    table = at.dataframe[0].value
    shown = table[table["outcome"] == "rejected"]
    # An earlier batch's candidate may be rejected too (by the margin): each is shown, with its own.
    every = [h["reason"] for h in platform_env.history if h["outcome"] == "rejected"]
    assert sorted(shown["reason"]) == sorted(every)
    assert rejected["reason"] in list(shown["reason"])
    assert rejected["reason"].startswith("rejected: ")
    assert metric(at, "In production") != f"v{rejected['candidate_version']}"


def test_explainability_compares_versions_with_drift(platform_env: Platform) -> None:
    at = run("explainability")
    explained = [h for h in platform_env.history if h.get("shap_uri")]
    assert explained
    assert charts(at), "importance chart"
    if len(explained) > 1:
        choice = at.selectbox[0]
        assert choice.label == "Compare with version"
        assert len(choice.options) == len(explained) - 1
        choice.select(choice.options[-1]).run()
        assert not at.exception
        assert "Biggest changes in importance" in [h.value for h in at.subheader]
    assert "Trained on batch-" in texts(at)


def test_data_page_shows_batches_rejections_drift_and_traffic(platform_env: Platform) -> None:
    at = run("data")
    settings = platform_env.settings
    assert metric(at, "Batches") == str(count(settings.raw_url, batches))
    logged = count(settings.raw_url, inference_logs)
    assert logged >= 5
    assert metric(at, "Predictions (latest)") == f"{logged:,}"
    assert all("nan" not in m.value.lower() for m in at.metric), [m.value for m in at.metric]
    assert float(metric(at, "Median price").strip("$").replace(",", "")) > 1000
    headers = [h.value for h in at.subheader]
    assert headers == [
        "Batches",
        "Rejected rows by rule",
        "Repaired fields by rule",
        "Drift at each training decision",
        "Recent inference traffic",
    ]
    assert len(charts(at)) == 3  # rows per batch, drift, traffic


def test_data_page_shows_repairs_with_the_text_received(platform_env: Platform) -> None:
    """The simulator's dirty rows include unreadable optional fields: kept, counted, shown."""
    at = run("data")
    url = platform_env.settings.clean_url
    columns = [repairs.c[name] for name in ("batch_id", "row_number", "rule", "original")]
    stored = read(url, select(*columns))
    assert stored, "the seeded stream has no repaired field"
    assert metric(at, "Rows repaired") == f"{len({(b, n) for b, n, *_ in stored}):,}"
    tables = [frame.value for frame in at.dataframe]
    rules = Counter(rule for _, _, rule, _ in stored)
    by_rule = [t for t in tables if list(t.columns) == ["rule", "rows"]]  # rejected, repaired
    assert any(dict(zip(t["rule"], t["rows"], strict=True)) == rules for t in by_rule), by_rule
    examples = next(t for t in tables if "original" in t.columns)
    assert 0 < len(examples) <= len(stored)
    assert set(zip(examples["rule"], examples["original"], strict=True)) <= {
        (rule, original) for _, _, rule, original in stored
    }
    for field, reason in zip(examples["field"], examples["reason"], strict=True):
        assert reason.startswith(f"{field}: ")


def test_pages_on_empty_stores_explain_what_to_run(
    platform_env: Platform, stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_RAW_DB_URL", stores.raw_url)
    monkeypatch.setenv("MLOPS_CLEAN_DB_URL", stores.clean_url)
    assert "mlops pipeline run model" in texts(run("models"))
    assert "No model with SHAP values yet" in texts(run("explainability"))
    assert "mlops pipeline run data" in texts(run("data"))


def test_unreachable_database_is_a_message(
    platform_env: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"postgresql://nobody:x@127.0.0.1:{closed_port_url().rsplit(':', 1)[1]}/clean"
    monkeypatch.setenv("MLOPS_CLEAN_DB_URL", url)
    at = run("models")
    assert any("Cannot read the CLEAN store" in e.value for e in at.error), texts(at)
    assert "x@" not in texts(at), "no password in messages"
