"""Served-model quality against the noise floor and the original system's GLM.

Starts the local platform (PostgreSQL, S3, MLflow, the data source, the API) in a temporary
folder and runs the platform's own pipelines as a user would: for every batch the source has,
the data pipeline (fetch → ingest → clean) and then the model pipeline (decide → train →
evaluate → promote → explain → record). Then it scores, on the same CLEAN test rows of the three
newest batches (the market as it is now):

- the served API (``POST /predict``, the production model as served);
- the original system's GLM (GammaRegressor on scaled numbers and one-hot status and state,
  high-cardinality columns dropped, default alpha) and the same GLM with a small alpha, both
  trained on every CLEAN train row;
- the noise floor: the simulator's own noise-free price as the prediction. No model can get
  below it. Rows whose record lacks the living area cannot get near it either (the size is what
  most of the price depends on): the *information floor* predicts those with the simulator's
  best guess without the size (its conditional median given rooms and regime), so
  ``information_ratio`` says how far the served model is from what the records allow;
- a *location oracle*: it knows every parameter of the simulator (the noise-free price of each
  house, its size included, even for records that lack it) except each city's and zip code's
  price effect, which it estimates from the train rows as well as the noise allows (Student-t
  MAP under the simulator's own priors and noise); records without a living area get the
  information floor. It bounds what a model can reach from this many listings per zip code:
  ``oracle_floor_ratio`` and ``oracle_mae_ratio`` are what the targets could at best be.

Prints ``key=value`` lines: ``noise_floor_mae``, ``served_mae``, ``floor_ratio`` (served /
floor), ``mae_ratio`` (served / original GLM), ``mae_ratio_tuned``, ``information_ratio``
(served / information floor), ``oracle_floor_ratio``, ``oracle_mae_ratio``, ``served_vs_oracle``
and the breakdown.

    python bench/quality.py
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from sqlalchemy import text

from mlops_platform.datasource.simulator import (
    PRICE_NOISE_DF,
    PRICE_NOISE_SCALE,
    SimulatorConfig,
    expected_prices,
    location_effects,
)
from mlops_platform.local import platform
from mlops_platform.local.processes import wait_http
from mlops_platform.pipelines.data import run_data_pipeline
from mlops_platform.pipelines.evidence import original_glm
from mlops_platform.pipelines.modeling import run_model_pipeline
from mlops_platform.schema import FEATURES, TARGET
from mlops_platform.serving.compiled import frame_records
from mlops_platform.settings import Settings, load_settings
from mlops_platform.storage.engine import make_engine

NEWEST_BATCHES = 3
TUNED_ALPHA = 1e-4  # "a small alpha": the GLM with its default penalty underfits badly
PREDICT_CHUNK = 500
ORACLE_ROUNDS = 20  # alternating city/zip estimates; they settle within about ten


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_pipelines(settings: Settings) -> int:
    """Every batch through the data and the model pipeline; the number of batches."""
    batches = 0
    while True:
        data = run_data_pipeline(settings)
        if data.get("ingest") is None:
            return batches
        batches += 1
        row = run_model_pipeline(settings)
        compared = ", ".join(  # each compared family's validation MAE: which one won, by how much
            f"{family} {scores['mae']:,.0f}"
            for family, scores in (row.get("validation_metrics") or {}).items()
        )
        progress(
            f"batch {batches}: {row.get('outcome')} ({row.get('candidate_family')}"
            f"{'; validation MAE ' + compared if compared else ''}), "
            f"model pipeline {sum(row['timings'].values()):.0f} s"
        )


def clean_rows(settings: Settings) -> pd.DataFrame:
    """CLEAN listings with the source's batch number and row, to find each house's own price."""
    clean, raw = make_engine(settings.clean_url), make_engine(settings.raw_url)
    try:
        fields = ", ".join(FEATURES)
        with clean.connect() as conn:
            rows = pd.read_sql(
                text(
                    f"SELECT batch_id, row_number, split, price, {fields} FROM clean_data.listings"
                ),
                conn,
            )
        with raw.connect() as conn:
            numbers = pd.read_sql(
                text("SELECT id AS batch_id, batch_number FROM raw_data.batches"), conn
            )
    finally:
        clean.dispose()
        raw.dispose()
    rows = rows.merge(numbers, on="batch_id", validate="many_to_one")
    rows["prev_sold_date"] = rows["prev_sold_date"].astype("string").astype(object)
    return rows.astype({c: float for c in ("price", "bed", "bath", "acre_lot", "house_size")})


def with_floor(rows: pd.DataFrame, settings: Settings, *, sized: bool) -> pd.Series:
    """The simulator's noise-free price of each row's house (``sized=False``: its best guess
    without the living area)."""
    config = SimulatorConfig.from_settings(settings)
    floor = pd.Series(np.nan, index=rows.index)
    for number, group in rows.groupby("batch_number"):
        expected = expected_prices(
            config, settings.group_number, settings.day, int(number), sized=sized
        )
        floor[group.index] = expected[group["row_number"].to_numpy()]
    return floor


def location_oracle(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """The location oracle's predictions for ``test`` (see the module docstring)."""
    effects = pd.DataFrame(location_effects()).set_index("zip_code")
    known = effects.reindex(train["zip_code"])
    keep = known["city"].notna().to_numpy()
    city = known["city"].to_numpy()[keep].astype(int)
    zips = train["zip_code"].to_numpy()[keep]
    truth = (known["city_effect"] + known["zip_effect"]).to_numpy()[keep]
    # What is left to estimate once every other parameter is known: city effect + zip effect.
    target = np.log(train["price"].to_numpy()[keep] / train["floor"].to_numpy()[keep]) + truth
    noise = PRICE_NOISE_SCALE**2
    city_prior = noise / effects.groupby("city")["city_effect"].first().var()
    zip_prior = noise / effects["zip_effect"].var()
    city_hat = pd.Series(0.0, index=np.unique(city))
    zip_hat = pd.Series(0.0, index=np.unique(zips))
    for _ in range(ORACLE_ROUNDS):
        fitted = city_hat.reindex(city).to_numpy() + zip_hat.reindex(zips).to_numpy()
        z = (target - fitted) / PRICE_NOISE_SCALE
        weight = (PRICE_NOISE_DF + 1) / (PRICE_NOISE_DF + z**2)
        city_hat = _shrunk(city, target - zip_hat.reindex(zips).to_numpy(), weight, city_prior)
        zip_hat = _shrunk(zips, target - city_hat.reindex(city).to_numpy(), weight, zip_prior)
    at = effects.reindex(test["zip_code"])
    estimate = (
        city_hat.reindex(at["city"]).fillna(0).to_numpy()
        + zip_hat.reindex(test["zip_code"]).fillna(0).to_numpy()
    )
    actual = (at["city_effect"] + at["zip_effect"]).fillna(0).to_numpy()
    sized = test["floor"].to_numpy() * np.exp(estimate - actual)
    return np.where(test["house_size"].notna(), sized, test["information_floor"].to_numpy())


def _shrunk(keys: np.ndarray, values: np.ndarray, weight: np.ndarray, prior: float) -> pd.Series:
    """Per key, the weighted mean of ``values`` shrunk toward 0 (a Gaussian prior's MAP)."""
    sums = pd.DataFrame({"k": keys, "wv": weight * values, "w": weight}).groupby("k").sum()
    return sums["wv"] / (sums["w"] + prior)


def served_predictions(settings: Settings, test: pd.DataFrame) -> np.ndarray:
    records = frame_records(test)
    prices = []
    with httpx.Client(base_url=settings.api_url, timeout=60) as client:
        for start in range(0, len(records), PREDICT_CHUNK):
            response = client.post("/predict", json=records[start : start + PREDICT_CHUNK])
            response.raise_for_status()
            prices.extend(response.json()["predictions"])
    return np.asarray(prices, dtype=float)


def mae(truth: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(np.abs(truth - predicted)))


def report(settings: Settings) -> None:
    rows = clean_rows(settings)
    rows["floor"] = with_floor(rows, settings, sized=True)
    unsized = with_floor(rows, settings, sized=False)
    rows["information_floor"] = rows["floor"].where(rows["house_size"].notna(), unsized)
    newest = sorted(rows["batch_number"].unique())[-NEWEST_BATCHES:]
    test = rows[(rows["split"] == "test") & rows["batch_number"].isin(newest)]
    train = rows[rows["split"] == "train"]
    truth = test[TARGET].to_numpy()
    glms = {
        name: mae(truth, original_glm(train, test, alpha=alpha))
        for name, alpha in (("original", 1.0), ("tuned", TUNED_ALPHA))
    }
    served = served_predictions(settings, test)
    model = httpx.get(f"{settings.api_url}/model", timeout=30).json()
    floor = mae(truth, test["floor"].to_numpy())
    information_floor = mae(truth, test["information_floor"].to_numpy())
    served_mae = mae(truth, served)
    oracle = mae(truth, location_oracle(train, test))
    complete = test[list(FEATURES)].notna().all(axis=1).to_numpy()
    no_size = test["house_size"].isna().to_numpy()
    print(f"test_rows={len(test)}")
    print(f"test_batches={','.join(str(int(b)) for b in newest)}")
    print(f"served_version={model.get('version')}")
    print(f"served_family={model.get('family')}")
    print(f"served_path={model.get('path')}")
    print(f"noise_floor_mae={floor:.0f}")
    print(f"information_floor_mae={information_floor:.0f}")
    print(f"served_mae={served_mae:.0f}")
    print(f"original_glm_mae={glms['original']:.0f}")
    print(f"tuned_glm_mae={glms['tuned']:.0f}")
    print(f"floor_ratio={served_mae / floor:.3f}")
    print(f"mae_ratio={served_mae / glms['original']:.3f}")
    print(f"mae_ratio_tuned={served_mae / glms['tuned']:.3f}")
    print(f"information_floor_ratio={information_floor / floor:.3f}")
    print(f"information_ratio={served_mae / information_floor:.3f}")
    print(f"oracle_mae={oracle:.0f}")
    print(f"oracle_floor_ratio={oracle / floor:.3f}")
    print(f"oracle_mae_ratio={oracle / glms['original']:.3f}")
    print(f"served_vs_oracle={served_mae / oracle:.3f}")
    for name, mask in (("complete", complete), ("no_size", no_size)):
        ratio = mae(truth[mask], served[mask]) / mae(truth[mask], test["floor"].to_numpy()[mask])
        print(f"{name}_rows_share={mask.mean():.3f}")
        print(f"{name}_floor_ratio={ratio:.3f}")


def main() -> None:
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        settings = platform.on_free_ports(
            load_settings(state_dir=Path(folder), model_name="quality", experiment_name="quality")
        )
        try:
            progress("starting PostgreSQL, S3, MLflow and the data source")
            platform.up(settings, services=platform.CORE)
            os.environ.update(settings.to_env())
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
            with contextlib.redirect_stdout(sys.stderr):  # MLflow prints run links
                batches = run_pipelines(settings)
            progress(f"{batches} batches done; starting the API")
            platform.up(settings, services=(*platform.CORE, "api"))
            wait_http(f"{settings.api_url}/readyz", timeout_s=180)
            report(settings)
        finally:
            platform.down(settings)


if __name__ == "__main__":
    main()
