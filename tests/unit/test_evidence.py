"""Evidence before promotion: paired bootstrap gains, the naive location baseline, the original
system's GLM."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_platform.pipelines.evidence import (
    location_median,
    original_glm,
    paired_gain,
    paired_gains,
)
from mlops_platform.pipelines.promote import judge
from mlops_platform.schema import FEATURES

RNG = np.random.default_rng(7)
TRUTH = np.exp(RNG.normal(12.5, 0.6, size=800))  # heavy-tailed prices
GOOD = {"mae": 90.0, "r2": 0.8, "bad_predictions": 0.0, "rows": 800.0}
PROD = {"mae": 100.0, "r2": 0.8, "bad_predictions": 0.0, "rows": 800.0}


def noisy(scale: float, seed: int) -> np.ndarray:
    return TRUTH * np.exp(np.random.default_rng(seed).normal(0, scale, size=TRUTH.size))


def test_a_clearly_better_model_holds_beyond_noise() -> None:
    gain = paired_gain(TRUTH, noisy(0.10, 1), noisy(0.30, 2), confidence=0.95)
    assert gain.gain > 0.5
    assert gain.holds()
    assert 0 < gain.low < gain.gain


def test_two_equally_good_models_do_not() -> None:
    gain = paired_gain(TRUTH, noisy(0.20, 3), noisy(0.20, 4), confidence=0.95)
    assert abs(gain.gain) < 0.1
    assert not gain.holds(), gain


def test_the_bound_is_reproducible_and_tighter_at_lower_confidence() -> None:
    strict = paired_gain(TRUTH, noisy(0.18, 5), noisy(0.20, 6), confidence=0.99)
    again = paired_gain(TRUTH, noisy(0.18, 5), noisy(0.20, 6), confidence=0.99)
    loose = paired_gain(TRUTH, noisy(0.18, 5), noisy(0.20, 6), confidence=0.80)
    assert strict == again
    assert strict.low < loose.low <= loose.gain


def test_a_promotion_is_refused_for_lack_of_evidence() -> None:
    """Better by more than the margin on these rows, but not beyond their noise: rejected."""
    noise = paired_gain(TRUTH, noisy(0.20, 3), noisy(0.20, 4), confidence=0.95).to_dict()
    verdict = judge(
        GOOD, PROD, margin=0.01, r2_tolerance=0.01, evidence={"production model": noise}
    )
    assert not verdict.promote
    assert "not beyond the noise of the test rows" in verdict.reason
    clear = paired_gain(TRUTH, noisy(0.10, 1), noisy(0.30, 2), confidence=0.95).to_dict()
    won = judge(GOOD, PROD, margin=0.01, r2_tolerance=0.01, evidence={"production model": clear})
    assert won.promote
    assert "paired gain" in won.reason


def test_a_first_model_must_beat_every_baseline_beyond_noise() -> None:
    """No production model to compare with: the naive baseline and the original GLM are the bar,
    each beaten beyond the noise of the test rows, or nothing goes to production."""
    tie = paired_gain(TRUTH, noisy(0.20, 3), noisy(0.20, 4), confidence=0.95).to_dict()
    clear = paired_gain(TRUTH, noisy(0.10, 1), noisy(0.30, 2), confidence=0.95).to_dict()
    both = {"location-median baseline": clear, "original GLM": clear}
    verdict = judge(GOOD, None, margin=0.01, r2_tolerance=0.01, evidence=both)
    assert verdict.promote
    assert verdict.reason.startswith("promoted: no model in production yet")
    assert "vs the location-median baseline:" in verdict.reason
    assert "vs the original GLM:" in verdict.reason
    trailing = judge(
        GOOD, None, margin=0.01, r2_tolerance=0.01, evidence={**both, "original GLM": tie}
    )
    assert not trailing.promote
    assert trailing.reason.startswith("rejected: a first model must beat the original GLM")
    assert "nothing is in production until one does" in trailing.reason


def test_the_original_glm_is_fitted_on_train_rows_and_predicts_any_row() -> None:
    rng = np.random.default_rng(3)
    n = 400
    frame = pd.DataFrame(
        {
            "brokered_by": None,
            "status": rng.choice(["for_sale", "sold"], n),
            "price": 0.0,
            "bed": rng.integers(1, 6, n).astype(float),
            "bath": rng.integers(1, 4, n).astype(float),
            "acre_lot": rng.uniform(0.1, 1, n),
            "street": None,
            "city": "Austin",
            "state": rng.choice(["Texas", "Ohio"], n),
            "zip_code": "78701",
            "house_size": rng.uniform(800, 4000, n),
            "prev_sold_date": None,
        }
    )
    frame["price"] = 150 * frame["house_size"] * np.where(frame["state"] == "Texas", 1.5, 1.0)
    rows = frame.head(20).assign(house_size=np.nan, state="Maine")  # missing and unseen values
    predicted = original_glm(frame, rows[list(FEATURES)])
    assert predicted.shape == (20,)
    assert np.all(np.isfinite(predicted))
    assert np.all(predicted > 0)
    fitted = original_glm(frame, frame, alpha=1e-6)
    assert np.mean(np.abs(fitted - frame["price"])) < 0.25 * np.mean(frame["price"])


def test_location_median_falls_back_from_zip_to_city_to_state_to_everywhere() -> None:
    train = pd.DataFrame(
        {
            "state": ["Texas", "Texas", "Texas", "Ohio"],
            "city": ["Austin", "Austin", "Dallas", "Akron"],
            "zip_code": ["78701", "78701", "75201", "44301"],
            "price": [100.0, 300.0, 50.0, 10.0],
        }
    )
    rows = pd.DataFrame(
        {
            "state": ["Texas", "Texas", "Texas", "Maine"],
            "city": ["Austin", "Austin", "Houston", "Portland"],
            "zip_code": ["78701", "78799", "77001", "04101"],
        }
    )
    assert location_median(train, rows).tolist() == [200.0, 200.0, 100.0, 75.0]


def test_gains_against_several_references_are_each_alone() -> None:
    """evaluate bootstraps once for both first-model baselines: the same numbers as one by one."""
    candidate = noisy(0.15, 1)
    references = {"a": noisy(0.30, 2), "b": noisy(0.16, 3)}
    together = paired_gains(TRUTH, candidate, references, confidence=0.95)
    for name, reference in references.items():
        assert together[name] == paired_gain(TRUTH, candidate, reference, confidence=0.95)
    assert together["a"].holds()
    empty = {name: reference[:0] for name, reference in references.items()}
    assert paired_gains(TRUTH[:0], candidate[:0], empty, confidence=0.9)["b"].rows == 0
