"""The compiled serving path reproduces the registered pipeline, or the API serves the pipeline.

Every family is trained on simulator batches without one state, then compared with the
pipeline on later (drifted) batches, on unseen categories, on missing optional fields and on
values exactly at the trees' split thresholds.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.preprocessing import MinMaxScaler
from threadpoolctl import threadpool_limits

from mlops_platform.datasource.simulator import SimulatorConfig
from mlops_platform.pipelines.features import ACRE_FLOOR
from mlops_platform.pipelines.linear_trees import LinearTrees
from mlops_platform.pipelines.train import FAMILIES, build_model, fit_candidates
from mlops_platform.schema import FEATURES, TARGET, ListingFeatures
from mlops_platform.serving import compiled as compiled_module
from mlops_platform.serving.compiled import (
    CompiledModel,
    CompiledSum,
    CompileError,
    PipelinePredictor,
    build_predictor,
    compile_model,
    edge_rows,
    record_columns,
    records_frame,
    verify,
)
from tests.support import clean_frame

CONFIG = SimulatorConfig(batch_size=1500, seed=17, drift_at=4, drift_strength=1.5)
UNSEEN_STATE = "Ohio"  # left out of training: its rows carry unseen states, cities and zips
OPTIONAL = ("brokered_by", "bed", "bath", "acre_lot", "street", "house_size", "prev_sold_date")
RTOL = 1e-6

log = logging.getLogger(__name__)


def _listings(*batches: int) -> pd.DataFrame:
    """Clean listings as CLEAN holds them (ISO dates), plus the API's ``record`` of each row."""
    frame = clean_frame(CONFIG, *batches)
    frame["record"] = [
        ListingFeatures.model_validate(
            {f: row[f] for f in FEATURES}, context={"as_of": date(2026, 1, 1)}
        ).model_dump()
        for row in frame.to_dict(orient="records")
    ]
    return frame


@pytest.fixture(scope="module", autouse=True)
def _one_openmp_thread() -> Iterator[None]:
    """HGB's OpenMP threads spin-wait; on a busy 2-core machine that makes fits 5× slower."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def listings() -> pd.DataFrame:
    return _listings(1, 2, 3, 4, 5)


@pytest.fixture(scope="module")
def train(listings: pd.DataFrame) -> pd.DataFrame:
    return listings[(listings["batch_id"] <= 3) & (listings["state"] != UNSEEN_STATE)]


@pytest.fixture(scope="module")
def models(train: pd.DataFrame) -> dict[str, Any]:
    candidates = fit_candidates(train, seed=3, half_life=3.0, families=FAMILIES)
    return {c.family: c.model for c in candidates}


@pytest.fixture(scope="module")
def unseen(listings: pd.DataFrame) -> pd.DataFrame:
    """Later, drifted batches plus every row of the state never seen in training."""
    return listings[(listings["batch_id"] >= 4) | (listings["state"] == UNSEEN_STATE)]


def _predicted(model: Any, records: list[dict]) -> np.ndarray:
    return np.asarray(model.predict(records_frame(records)), dtype=np.float64)


def _assert_matches(model: Any, records: list[dict]) -> None:
    """Compiled == pipeline, as a batch and one record at a time (the two code paths)."""
    compiled = compile_model(model)
    expected = _predicted(model, records)
    np.testing.assert_allclose(compiled.predict_records(records), expected, rtol=RTOL)
    one_by_one = np.concatenate([compiled.predict_records([r]) for r in records])
    np.testing.assert_allclose(one_by_one, expected, rtol=RTOL)


def _pipelines(model: Any) -> list[tuple[Any, CompiledModel]]:
    """Each fitted Pipeline the model predicts through, with its compiled counterpart."""
    compiled = compile_model(model)
    if isinstance(model, LinearTrees):
        assert isinstance(compiled, CompiledSum)
        return list(zip((model.linear_, model.trees_), compiled.parts, strict=True))
    assert isinstance(compiled, CompiledModel)
    return [(model.regressor_ if hasattr(model, "regressor_") else model, compiled)]


def _with(records: list[dict], **changes: Any) -> list[dict]:
    return [{**r, **changes} for r in records]


@pytest.mark.parametrize("family", FAMILIES)
def test_compiled_matches_pipeline_on_new_batches_and_unseen_state(
    models: dict[str, Any], unseen: pd.DataFrame, family: str
) -> None:
    records = list(unseen["record"])
    assert len(records) > 2000
    assert (unseen["state"] == UNSEEN_STATE).sum() > 100
    _assert_matches(models[family], records)


@pytest.mark.parametrize("family", FAMILIES)
def test_compiled_matches_pipeline_on_unseen_categories_and_missing_fields(
    models: dict[str, Any], unseen: pd.DataFrame, family: str
) -> None:
    base = list(unseen["record"].head(40))
    never_seen = {
        "city": "Atlantis",
        "zip_code": "99999",
        "brokered_by": "no-such-broker",
        "street": "no-such-street",
        "state": "Nowhere",  # not even a valid state: the compiled path must not care
    }
    records = [*_with(base, **never_seen), *_with(base, **dict.fromkeys(OPTIONAL))]
    for name, value in never_seen.items():
        records += _with(base[:5], **{name: value})
    for name in OPTIONAL:
        records += _with(base[:5], **{name: None})
    records.append({k: base[0][k] for k in ("status", "city", "state", "zip_code")})
    records += _with(base[:5], prev_sold_date="2001-02-03")  # a CLEAN-style ISO string
    _assert_matches(models[family], records)


def _thresholds(model: Any) -> dict[int, np.ndarray]:
    """Finite split thresholds of the HGB trees, per encoded feature index."""
    nodes = np.concatenate([p.nodes for (p,) in model.regressor_[-1]._predictors])
    splits = nodes[(nodes["is_leaf"] == 0) & np.isfinite(nodes["num_threshold"])]
    return {
        f: np.unique(splits["num_threshold"][splits["feature_idx"] == f])
        for f in np.unique(splits["feature_idx"])
    }


def _preimage(target: float, forward: Any, inverse: Any) -> float | None:
    """A raw value whose ``forward`` (the builder's numpy transform) is exactly ``target``."""
    guess = float(inverse(target))
    for ulps in (0, 1, -1, 2, -2, 3, -3):
        value = guess
        for _ in range(abs(ulps)):
            value = float(np.nextafter(value, np.inf if ulps > 0 else -np.inf))
        if forward(np.array([value]))[0] == target:
            return value
    return None


# The builder's transforms of house size and lot size, and their inverses.
SIZE_TRANSFORMS = (
    (np.log1p, np.expm1),
    (lambda a: np.log(a + ACRE_FLOOR), lambda t: np.exp(t) - ACRE_FLOOR),
)


def _sold_date_at(years: float, reference_year: float) -> date | None:
    """A sale date whose ``years_since_sold`` is exactly ``years``, if there is one."""
    wanted = reference_year - years
    guess = date(int(wanted), 1, 1) + timedelta(days=int((wanted % 1) * 365.25) - 1)
    for shift in range(-3, 4):
        day = guess + timedelta(days=shift)
        if reference_year - (day.year + day.timetuple().tm_yday / 365.25) == years:
            return day
    return None


def _at_threshold(feature: int, t: float, base: dict, builder: Any) -> dict | None:
    """``base`` changed so that encoded numeric ``feature`` is exactly ``t``, if possible."""
    if feature in (0, 1):  # bed, bath: the value itself
        return {**base, ("bed", "bath")[feature]: t}
    if feature in (2, 3):  # logs of house size, lot size
        size = _preimage(t, *SIZE_TRANSFORMS[feature - 2])
        return None if size is None else {**base, ("house_size", "acre_lot")[feature - 2]: size}
    if feature == 4:
        sold = _sold_date_at(t, builder.reference_year_)
        return None if sold is None else {**base, "prev_sold_date": sold}
    if feature in (5, 6):  # listings per broker / street: a key with that count
        name = ("brokered_by", "street")[feature - 5]
        counts = (builder.broker_counts_, builder.street_counts_)[feature - 5]
        key = next((k for k, n in counts.items() if float(n) == t), None)
        return None if key is None else {**base, name: key}
    return None


def test_hgb_compiled_matches_pipeline_exactly_at_split_thresholds(
    models: dict[str, Any], unseen: pd.DataFrame
) -> None:
    model = models["hgb"]
    thresholds = _thresholds(model)
    records = [
        record
        for base in list(unseen["record"].head(3))
        for feature, values in thresholds.items()
        for t in map(float, values)
        if (record := _at_threshold(int(feature), t, base, model.regressor_[0])) is not None
    ]
    encoded = compile_model(model).encode_records(records)
    hits = {int(f): int(np.isin(encoded[:, f], t).sum()) for f, t in thresholds.items() if f < 7}
    assert all(hits[f] > 0 for f in (0, 1, 2, 3) if f in hits), hits
    assert sum(hits.values()) > 100, hits
    _assert_matches(model, records)


def test_hgb_tree_walk_matches_sklearn_at_thresholds_nan_and_next_floats(
    models: dict[str, Any], unseen: pd.DataFrame
) -> None:
    estimator = models["hgb"].regressor_[-1]
    compiled = compile_model(models["hgb"])
    rows = compiled.encode_records(list(unseen["record"].head(1)))
    nodes = np.concatenate([p.nodes for (p,) in estimator._predictors])
    splits = nodes[nodes["is_leaf"] == 0]
    variants = []
    for node in splits:
        t, f = node["num_threshold"], node["feature_idx"]
        for value in (t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf), np.nan):
            row = rows[0].copy()
            row[f] = value
            variants.append(row)
    x = np.array(variants)
    expected = np.exp(estimator.predict(x))
    np.testing.assert_allclose(compiled.head(x), expected, rtol=RTOL)
    singles = np.concatenate([compiled.head(row[None, :]) for row in x[:: max(1, len(x) // 500)]])
    np.testing.assert_allclose(singles, expected[:: max(1, len(x) // 500)], rtol=RTOL)


@pytest.mark.parametrize("family", FAMILIES)
def test_encoded_matrix_is_what_the_final_estimator_sees(
    models: dict[str, Any], unseen: pd.DataFrame, family: str
) -> None:
    frame = unseen.head(300)
    for pipeline, compiled in _pipelines(models[family]):
        expected = pipeline[:-1].transform(frame[list(FEATURES)])
        expected = expected.toarray() if hasattr(expected, "toarray") else expected
        encoded = compiled.encode_records(list(frame["record"]))
        np.testing.assert_allclose(encoded, expected, rtol=1e-12)
        assert compiled.feature_names == tuple(pipeline[:-1].get_feature_names_out())


@pytest.mark.parametrize("family", FAMILIES)
def test_build_predictor_serves_compiled_when_it_verifies(
    models: dict[str, Any], unseen: pd.DataFrame, family: str
) -> None:
    predictor = build_predictor(models[family], unseen.head(500))
    assert (predictor.path, predictor.reason) == ("compiled", None)
    assert predictor.max_relative_difference <= RTOL
    records = list(unseen["record"].tail(100))
    expected = _predicted(models[family], records)
    np.testing.assert_allclose(predictor.predict_records(records), expected, rtol=RTOL)
    assert predictor.predict_records([]).shape == (0,)
    # The API hands the checked body over as columns; the pipeline fallback takes them too.
    columns = record_columns(records)
    np.testing.assert_array_equal(
        predictor.predict_columns(columns), predictor.predict_records(records)
    )
    fallback = PipelinePredictor(models[family])
    np.testing.assert_allclose(fallback.predict_columns(columns), expected, rtol=1e-12)


def test_the_parts_of_a_sum_compute_the_features_once(models: dict[str, Any]) -> None:
    compiled = compile_model(models["linear_trees"])
    assert isinstance(compiled, CompiledSum)
    linear, trees = compiled.parts
    assert linear.features is trees.features  # fitted on the same rows: one object, one pass


def _refit(model: Any, train: pd.DataFrame) -> Any:
    return model.fit(train[list(FEATURES)], train[TARGET].to_numpy())


def _unsupported(kind: str) -> Any:
    if kind == "other final estimator":
        return build_model("glm", 0).set_params(model=Ridge())
    if kind == "unknown transformer":
        return build_model("glm", 0).set_params(encode__numeric__standardscaler=MinMaxScaler())
    return build_model("hgb", 0).set_params(  # ordinal status/state as native categories
        regressor__model__categorical_features=[7, 8], regressor__model__max_iter=30
    )


@pytest.mark.parametrize(
    ("kind", "named"),
    [
        ("other final estimator", "Ridge"),
        ("unknown transformer", "MinMaxScaler"),
        ("native categorical splits", "native categorical"),
    ],
)
def test_build_predictor_falls_back_to_the_pipeline_when_it_cannot_compile(
    train: pd.DataFrame, unseen: pd.DataFrame, kind: str, named: str
) -> None:
    model = _refit(_unsupported(kind), train)
    with pytest.raises(CompileError, match=named):
        compile_model(model)
    predictor = build_predictor(model, unseen.head(200))
    assert predictor.path == "pipeline"
    assert named in predictor.reason
    assert not predictor.mismatch  # unsupported is not a bug: no alert
    records = list(unseen["record"].head(50))
    np.testing.assert_array_equal(
        predictor.predict_records(records), model.predict(unseen.head(50)[list(FEATURES)])
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_build_predictor_falls_back_when_verification_fails(
    models: dict[str, Any], unseen: pd.DataFrame, family: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = models[family]
    # Deliberate fault: an off-by-one-year reference day, a bug a rewrite of the builder could
    # plausibly introduce. Every listing with a sale date is mis-aged.
    faulty = _mis_aged(compile_model(model))
    with pytest.raises(CompileError, match="differ"):
        verify(faulty, model, unseen.head(300))
    monkeypatch.setattr(compiled_module, "compile_model", lambda _: faulty)
    predictor = build_predictor(model, unseen.head(300))
    assert predictor.path == "pipeline"
    assert "differ from the pipeline" in predictor.reason
    assert predictor.mismatch  # what the API's mlops_api_compiled_mismatch alert reads


def _mis_aged(compiled: CompiledModel | CompiledSum) -> CompiledModel | CompiledSum:
    if isinstance(compiled, CompiledSum):
        return dataclasses.replace(compiled, parts=tuple(map(_mis_aged, compiled.parts)))
    features = compiled.features
    shifted = dataclasses.replace(features, reference_year=features.reference_year + 1)
    return dataclasses.replace(compiled, features=shifted)


def test_without_a_background_the_compiled_path_is_verified_on_the_edge_rows(
    models: dict[str, Any], unseen: pd.DataFrame
) -> None:
    edge = edge_rows()
    assert len(edge) > 20
    assert edge[list(OPTIONAL)].isna().any().all()  # each optional field missing somewhere
    for model in models.values():
        predictor = build_predictor(model, unseen.head(0))
        assert (predictor.path, predictor.verified_rows) == ("compiled", len(edge))
        with_sample = build_predictor(model, unseen.head(64))
        assert with_sample.verified_rows == 64 + len(edge)


@pytest.mark.parametrize("family", FAMILIES)
def test_one_record_predict_time_is_measured(
    models: dict[str, Any], unseen: pd.DataFrame, family: str, request: pytest.FixtureRequest
) -> None:
    """Medians go to the test's user properties and the log, never into an assertion."""
    compiled = compile_model(models[family])
    records = list(unseen["record"].head(100))

    def median_us(records: list[dict], repeats: int) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            compiled.predict_records(records)
            times.append(time.perf_counter() - start)
        return float(np.median(times) * 1e6)

    timings = {
        f"{family}_one_row_us": median_us(records[:1], 300),
        f"{family}_per_row_in_100_us": median_us(records, 50) / 100,
    }
    request.node.user_properties.extend(timings.items())
    log.info("compiled predict timings: %s", timings)
