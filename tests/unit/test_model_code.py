"""Modeling code without services: features, drift statistics, the decision, the verdict, SHAP."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_platform.datasource.simulator import SimulatorConfig
from mlops_platform.pipelines import drift
from mlops_platform.pipelines.explain import explain, explain_record, source_of
from mlops_platform.pipelines.features import OUTPUTS, SOURCES, ListingFeatureBuilder
from mlops_platform.pipelines.linear_trees import noise_weights
from mlops_platform.pipelines.promote import judge
from mlops_platform.pipelines.registry import TRUSTED_TYPES
from mlops_platform.pipelines.train import (
    FAMILIES,
    at_most,
    build_model,
    choose,
    fit_candidates,
    recency_weights,
)
from mlops_platform.schema import FEATURES
from mlops_platform.settings import load_settings
from tests.support import clean_frame

CONFIG = SimulatorConfig(batch_size=1500, seed=9, drift_at=4, drift_strength=1.5)
THRESHOLDS = drift.Thresholds(psi=0.2, error_ratio=1.25, new_rows_ratio=1.0, min_new_rows=100)


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    return clean_frame(CONFIG, 1, 2, 3, 4)


@pytest.fixture(scope="module")
def candidates(market: pd.DataFrame):
    """Every family the platform builds (the GLM too: it is served, not compared)."""
    train = market[(market["split"] == "train") & (market["batch_id"] <= 3)]
    return fit_candidates(train, seed=1, half_life=3.0, families=FAMILIES)


def test_features_cover_every_output_and_map_back() -> None:
    assert set(SOURCES) == set(OUTPUTS)
    assert set(SOURCES.values()) <= set(FEATURES)


def test_feature_builder_handles_missing_and_unseen(market: pd.DataFrame) -> None:
    builder = ListingFeatureBuilder().fit(market)
    odd = market.head(3).copy()
    odd.loc[odd.index[0], ["house_size", "prev_sold_date", "brokered_by"]] = [None, None, None]
    odd.loc[odd.index[1], "street"] = "never-seen"
    out = builder.transform(odd)
    assert list(out.columns) == list(OUTPUTS)
    assert np.isnan(out["log_house_size"].iloc[0])
    assert out["brokered_by"].iloc[0] == "<missing>"
    assert out["broker_listings"].iloc[0] == 0.0  # no broker
    assert out["street_listings"].iloc[1] == 1.0  # a street never seen is a street listed once
    # Only ids listed more than once are kept: the fitted builder does not grow with the data.
    assert min(builder.street_counts_.values(), default=2) >= 2
    assert len(builder.street_counts_) < market["street"].nunique() / 10
    assert (out["zip3"].str.len() == 3).all()


def test_psi_is_near_zero_for_one_market_and_large_after_drift(market: pd.DataFrame) -> None:
    one, two, drifted = (market[market["batch_id"] == b] for b in (1, 2, 4))
    assert drift.numeric_drift(one["price"], two["price"])["psi"] < 0.05
    assert drift.numeric_drift(one["price"], drifted["price"])["psi"] > 0.2
    assert drift.categorical_drift(one["state"], two["state"])["psi"] < 0.1


def test_decision_reasons(market: pd.DataFrame) -> None:
    one, two, three, drifted = (market[market["batch_id"] == b] for b in (1, 2, 3, 4))
    first = drift.decide(None, one, THRESHOLDS)
    assert first.retrain
    assert first.reasons == ["no production model yet"]
    few = drift.decide(one, two.head(50), THRESHOLDS)
    assert not few.retrain
    assert "fewer than 100" in few.reasons[0]
    calm = drift.decide(pd.concat([one, two]), three, THRESHOLDS)
    assert not calm.retrain
    assert "keeping the production model" in calm.reasons[0]
    shifted = drift.decide(pd.concat([one, two]), drifted, THRESHOLDS)
    assert shifted.retrain
    assert "price" in shifted.drifted
    assert "data drift" in shifted.reasons[0]
    worse = drift.decide(
        pd.concat([one, two]),
        three,
        THRESHOLDS,
        production_mae_reference=100.0,
        production_mae_new=150.0,
    )
    assert worse.retrain
    assert "1.50× its test MAE" in worse.reasons[0]
    volume = drift.decide(one, pd.concat([two, three]), THRESHOLDS)
    assert volume.retrain
    assert "of the" in volume.reasons[-1]


def test_verdicts_say_why() -> None:
    good = {"mae": 90.0, "r2": 0.8, "bad_predictions": 0.0, "rows": 10.0}
    prod = {"mae": 100.0, "r2": 0.8, "bad_predictions": 0.0, "rows": 10.0}
    assert judge(good, None, margin=0.01, r2_tolerance=0.01).reason.startswith(
        "promoted: no model in production yet"
    )
    assert judge(good, prod, margin=0.01, r2_tolerance=0.01).promote
    close = judge({**good, "mae": 99.5}, prod, margin=0.01, r2_tolerance=0.01)
    assert not close.promote
    assert "1% margin" in close.reason
    worse_r2 = judge({**good, "r2": 0.7}, prod, margin=0.01, r2_tolerance=0.01)
    assert not worse_r2.promote
    assert "R² guardrail" in worse_r2.reason
    broken = judge({**good, "bad_predictions": 3.0}, None, margin=0.01, r2_tolerance=0.01)
    assert not broken.promote
    assert "NaN" in broken.reason


def test_family_selection_samples_rows_the_same_way_every_time() -> None:
    """Candidates are compared on a fixed sample of a large train split, every batch kept."""
    rng = np.random.default_rng(0)
    keys = ["".join(rng.choice(list("0123456789abcdef"), 64)) for _ in range(20_000)]
    rows = pd.DataFrame({"row_key": keys, "batch_id": np.repeat([1, 2, 3, 4], 5_000)})
    sample = at_most(rows, 4_000)
    assert 3_600 < len(sample) < 4_400
    assert at_most(rows, 4_000).index.equals(sample.index)
    assert sample["batch_id"].value_counts().min() > 800
    assert at_most(rows, 30_000) is rows


def test_recent_batches_weigh_more() -> None:
    weights = recency_weights(pd.Series([1, 1, 2, 3, 5]), half_life=1.0)
    assert weights.tolist() == [0.125, 0.125, 0.25, 0.5, 1.0]


def test_pooled_locations_beat_the_glm_baseline(candidates, market: pd.DataFrame) -> None:
    """On this small market (a few thousand rows) plain boosted trees and the GLM are within
    noise of each other (which is ahead moved with the 128-bit row keys' validation slice); the
    gap at scale is in docs/BENCHMARKS.md. The default family, linear_trees, must beat both,
    which is why they are no longer compared by default."""
    assert [c.family for c in candidates] == list(FAMILIES)
    assert load_settings().families == ("linear_trees",)
    assert load_settings(model_families=",".join(FAMILIES)).families == FAMILIES  # all settable
    scores = {c.family: c.validation["mae"] for c in candidates}
    assert scores["linear_trees"] < scores["glm"]
    assert scores["linear_trees"] < scores["hgb"]
    chosen = choose(candidates)
    assert chosen.family == "linear_trees"
    assert chosen.validation["mae"] == min(scores.values())
    assert chosen.validation["r2"] > 0.6, chosen.validation
    test = market[(market["split"] == "test") & (market["batch_id"] <= 3)]
    assert len(test) > 100


def test_noise_weights_trust_tails_and_noisy_groups_less() -> None:
    """A far-off price weighs little; a row of the noisier group (no living area) weighs less
    than an equally typical row of the other; the weights average 1 (the penalty keeps its
    meaning)."""
    rng = np.random.default_rng(3)
    sized = 0.1 * rng.standard_normal(2000)
    unsized = 0.3 * rng.standard_normal(500)
    residual = np.concatenate([sized, unsized, [2.0]])
    group = np.concatenate([np.zeros(2000, bool), np.ones(500, bool), [False]])
    weight = noise_weights(residual, group, tail_df=4.0)
    assert weight.mean() == pytest.approx(1.0)
    assert weight[-1] < 0.05 * np.median(weight[:2000])
    assert np.median(weight[2000:2500]) < 0.2 * np.median(weight[:2000])
    assert np.isfinite(noise_weights(np.zeros(10), np.zeros(10, bool), 4.0)).all()


def test_reweighted_linear_part_is_no_worse_on_heavy_tailed_prices(market: pd.DataFrame) -> None:
    """The robust refits are the maximum-likelihood fit for the simulator's t-distributed noise:
    on held-out rows the median absolute log error is no worse than plain least squares'."""
    train = market[(market["split"] == "train") & (market["batch_id"] <= 3)]
    test = market[(market["split"] == "test") & (market["batch_id"] <= 3)]
    weights = recency_weights(train["batch_id"], 3.0)
    errors = {}
    for rounds in (0, 1):
        model = build_model("linear_trees", seed=1).set_params(robust_rounds=rounds)
        model.fit(train[list(FEATURES)], train["price"].to_numpy(), sample_weight=weights)
        log_error = model.predict_log(test[list(FEATURES)]) - np.log(test["price"].to_numpy())
        errors[rounds] = float(np.median(np.abs(log_error)))
    assert errors[1] <= errors[0] * 1.01, errors


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_saves_with_only_the_stated_trusted_types(
    candidates, market: pd.DataFrame, family: str
) -> None:
    """The registry passes TRUSTED_TYPES instead of dumping the model to find them."""
    import skops.io

    model = next(c.model for c in candidates if c.family == family)
    saved = skops.io.dumps(model)
    assert set(skops.io.get_untrusted_types(data=saved)) <= set(TRUSTED_TYPES)
    rows = market[market["split"] == "test"].head(50)[list(FEATURES)]
    loaded = skops.io.loads(saved, trusted=list(TRUSTED_TYPES))
    np.testing.assert_array_equal(loaded.predict(rows), model.predict(rows))


def test_saving_a_model_skips_the_installed_distributions_scan(
    candidates, market: pd.DataFrame, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow checks explicit requirements against every installed distribution (1.3–2.4 s);
    registry skips that check while saving, and only then."""
    import importlib.metadata

    import mlflow
    from mlflow.utils import environment, requirements_utils

    from mlops_platform.pipelines import registry

    scans: list[int] = []

    def scan() -> dict[str, list[str]]:
        scans.append(1)
        return {}

    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    monkeypatch.setattr(importlib.metadata, "packages_distributions", scan)
    monkeypatch.setattr(requirements_utils.importlib_metadata, "packages_distributions", scan)
    original = environment.warn_dependency_requirement_mismatches
    model = next(c.model for c in candidates if c.family == "linear_trees")
    with registry.requirements_not_rechecked():
        mlflow.sklearn.save_model(
            model,
            tmp_path / "model",
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
            skops_trusted_types=list(TRUSTED_TYPES),
            pip_requirements=registry.pip_requirements(),
        )
    assert environment.warn_dependency_requirement_mismatches is original
    assert not scans
    saved = (tmp_path / "model" / "requirements.txt").read_text().split()
    assert {r.split("==")[0] for r in saved} >= {"mlflow", "scikit-learn", "skops"}
    rows = market[market["split"] == "test"].head(20)[list(FEATURES)]
    loaded = mlflow.sklearn.load_model(str(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.predict(rows), model.predict(rows))
    environment.warn_dependency_requirement_mismatches(saved)  # the check it skips does scan
    assert scans


def test_listing_counts_read_the_same_from_a_dict(market: pd.DataFrame) -> None:
    """Models saved before IdCounts hold plain dicts; they must transform as before."""
    builder = ListingFeatureBuilder().fit(market)
    assert len(builder.street_counts_) > 0
    old = ListingFeatureBuilder().fit(market)
    old.broker_counts_ = dict(builder.broker_counts_.items())
    old.street_counts_ = dict(builder.street_counts_.items())
    pd.testing.assert_frame_equal(old.transform(market), builder.transform(market))
    first = next(iter(builder.broker_counts_))
    assert builder.broker_counts_[first] == old.broker_counts_[first]


@pytest.mark.parametrize("family", FAMILIES)
def test_shap_values_add_up_to_the_prediction(
    candidates,
    market: pd.DataFrame,
    family: str,
) -> None:
    model = next(c.model for c in candidates if c.family == family)
    rows = market[market["split"] == "test"].head(100)
    explanation = explain(model, rows, background=rows)
    assert list(explanation.values.columns) == list(FEATURES)
    total = explanation.base_value + explanation.values.sum(axis=1).to_numpy()
    np.testing.assert_allclose(total, np.log(model.predict(rows[list(FEATURES)])), atol=1e-6)
    top = list(explanation.importance())[:3]
    assert "house_size" in top
    one = explain_record(model, rows.head(1), background=rows)
    assert one["prediction"] == pytest.approx(
        np.exp(one["base_value"] + sum(one["contributions"].values()))
    )


@pytest.mark.parametrize(
    ("encoded", "source"),
    [
        ("onehot__state_New York", "state"),
        ("onehot__state_infrequent_sklearn", "state"),
        ("numeric__missingindicator_bed", "bed"),
        ("target__zip3", "zip_code"),
        ("numeric__years_since_sold", "prev_sold_date"),
        ("onehot__zip_code_78701", "zip_code"),
        ("onehot__city_San Juan", "city"),
        ("numeric__bath_without_size", "bath"),
    ],
)
def test_encoded_columns_map_to_their_field(encoded: str, source: str) -> None:
    assert source_of(encoded) == source
