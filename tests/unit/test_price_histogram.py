"""A batch of prices lands in the price histogram exactly as one ``observe`` per price would."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry

from mlops_platform.serving.metrics import _PRICE_BUCKETS, ApiMetrics

NAME = "mlops_api_prediction_value_dollars"


def _samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("le", "")): s.value
        for metric in registry.collect()
        if metric.name in (NAME, "mlops_api_predictions")
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def test_batch_observe_equals_one_observe_per_price() -> None:
    rng = np.random.default_rng(0)
    bounds = np.array(_PRICE_BUCKETS, dtype=np.float64)
    batches = [
        np.exp(rng.normal(12.5, 1.5, size=100)),
        np.concatenate([bounds, np.nextafter(bounds, np.inf), np.nextafter(bounds, -np.inf)]),
        np.array([np.nan, np.inf, -np.inf, 0.0, -5.0, 1e12]),
        np.array([np.nan]),
        np.empty(0),
    ]
    batched, one_by_one = ApiMetrics(), ApiMetrics()
    for prices in batches:
        batched.observe_predictions(prices)
        one_by_one.predictions.inc(len(prices))
        for price in prices[np.isfinite(prices)].tolist():
            one_by_one.prediction_value.observe(price)
    got, expected = _samples(batched.registry), _samples(one_by_one.registry)
    assert got.keys() == expected.keys()
    assert sum(v for (name, _), v in got.items() if name == f"{NAME}_count") > 100
    for key, value in expected.items():
        if key[0] == f"{NAME}_sum":  # summed per batch, not per price: the last bits may differ
            assert np.isclose(got[key], value, rtol=1e-12), key
        else:
            assert got[key] == value, key
