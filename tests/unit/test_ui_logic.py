"""The UI's pure parts: the form's records and validation, and the frames behind its charts."""

from __future__ import annotations

import math
from datetime import date

import pandas as pd
import pytest

from mlops_platform.schema import FEATURES
from mlops_platform.ui import charts, form


def test_form_covers_every_model_input_once() -> None:
    assert sorted(f.name for f in form.FIELDS) == sorted(FEATURES)
    required = {f.name for f in form.FIELDS if f.required}
    assert required == {"status", "state", "city", "zip_code"}


def test_defaults_are_a_valid_listing() -> None:
    assert form.validate(form.to_record(form.defaults())) == {}


def test_blanks_become_nulls_and_dates_iso() -> None:
    values = form.defaults() | {"street": "  ", "prev_sold_date": date(2020, 1, 2), "bed": None}
    record = form.to_record(values)
    assert record["street"] is None
    assert record["bed"] is None
    assert record["prev_sold_date"] == "2020-01-02"


def test_validation_names_each_bad_field() -> None:
    record = form.to_record(form.defaults() | {"zip_code": "12a", "city": "", "bath": 40})
    errors = form.validate(record)
    assert set(errors) == {"zip_code", "city", "bath"}
    assert "5-digit" in errors["zip_code"]
    assert not errors["zip_code"].startswith("Value error")


def test_waterfall_steps_end_at_the_prediction() -> None:
    explanation = {"base_value": 12.0, "contributions": {"a": 0.2, "b": -0.5, "c": 0.05}}
    frame = charts.waterfall_frame(explanation)
    assert list(frame["feature"]) == ["b", "a", "c"]  # largest effect first
    assert frame["start"].iloc[0] == pytest.approx(math.exp(12.0))
    assert frame["end"].iloc[-1] == pytest.approx(math.exp(12.0 - 0.25))
    assert list(frame["effect"]) == ["lowers", "raises", "raises"]
    for (_, step), (_, following) in zip(
        frame.iloc[:-1].iterrows(), frame.iloc[1:].iterrows(), strict=True
    ):
        assert following["start"] == pytest.approx(step["end"])


def history(*rows: dict) -> pd.DataFrame:
    base = {
        "candidate_version": None,
        "candidate_metrics": None,
        "outcome": "skipped",
        "data_version": "batch-1",
        "max_batch_id": 1,
        "drift": {},
    }
    return pd.DataFrame([base | row for row in rows])


def test_metrics_frame_has_trained_candidates_only() -> None:
    frame = charts.metrics_frame(
        history(
            {
                "candidate_version": "1",
                "candidate_metrics": {"mae": 10.0, "r2": 0.5},
                "outcome": "promoted",
            },
            {"data_version": "batch-2"},
            {
                "candidate_version": "2",
                "candidate_metrics": {"mae": 12.0, "r2": None},
                "outcome": "rejected",
            },
        )
    )
    assert frame[["version", "metric", "value", "outcome"]].to_dict("records") == [
        {"version": 1, "metric": "MAE", "value": 10.0, "outcome": "promoted"},
        {"version": 1, "metric": "R²", "value": 0.5, "outcome": "promoted"},
        {"version": 2, "metric": "MAE", "value": 12.0, "outcome": "rejected"},
    ]


def test_drift_frame_is_psi_per_feature_per_decision() -> None:
    frame = charts.drift_frame(
        history(
            {"max_batch_id": 3, "drift": {"price": {"psi": 0.3, "ks": 0.1}, "state": {"psi": 0.01}}}
        )
    )
    assert frame.to_dict("records") == [
        {"batch": 3, "feature": "price", "psi": 0.3},
        {"batch": 3, "feature": "state", "psi": 0.01},
    ]


def test_batch_rows_split_cleaned_into_as_received_and_repaired() -> None:
    summary = pd.DataFrame(
        {
            "batch_id": [1, 2],
            "cleaned": pd.array([90, None], dtype="Int64"),  # batch 2 received, not cleaned yet
            "repaired": pd.array([4, None], dtype="Int64"),
            "rejected": pd.array([10, None], dtype="Int64"),
        }
    )
    frame = charts.batch_rows_frame(summary)
    assert frame.to_dict("records") == [
        {"batch_id": 1, "kind": "clean as received", "rows": 86},
        {"batch_id": 1, "kind": "repaired", "rows": 4},
        {"batch_id": 1, "kind": "rejected", "rows": 10},
    ]
    assert charts.batch_rows(summary).to_dict()["mark"]["type"] == "bar"
