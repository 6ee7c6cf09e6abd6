"""Model features from the listing schema, as a scikit-learn transformer.

The transformer is part of the registered model, so training and serving derive features the
same way. Every derived column remembers the original field it came from (:data:`SOURCES`), so
SHAP contributions can be reported per original feature.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from mlops_platform.schema import FEATURES

NUMERIC: tuple[str, ...] = (
    "bed",
    "bath",
    "log_house_size",
    "log_acre_lot",
    "years_since_sold",
    "broker_listings",
    "street_listings",
    "bed_without_size",
    "bath_without_size",
)
# Low-cardinality categories (one-hot or native) and high-cardinality ones (target-encoded).
LOW_CARDINALITY: tuple[str, ...] = ("status", "state")
HIGH_CARDINALITY: tuple[str, ...] = ("city", "zip_code", "zip3", "brokered_by")
OUTPUTS: tuple[str, ...] = (*NUMERIC, *LOW_CARDINALITY, *HIGH_CARDINALITY)

SOURCES: dict[str, str] = {
    "bed": "bed",
    "bath": "bath",
    "log_house_size": "house_size",
    "log_acre_lot": "acre_lot",
    "years_since_sold": "prev_sold_date",
    "broker_listings": "brokered_by",
    "street_listings": "street",
    "bed_without_size": "bed",
    "bath_without_size": "bath",
    "status": "status",
    "state": "state",
    "city": "city",
    "zip_code": "zip_code",
    "zip3": "zip_code",
    "brokered_by": "brokered_by",
}
MISSING_CATEGORY = "<missing>"
# Added to the lot before its log: a hundredth of an acre (435 sq ft), the smallest lots listed.
# log1p would flatten every lot under an acre, where most of the lot's effect on price is.
ACRE_FLOOR = 0.01
# Brokers and streets whose listings are counted: the most-listed ones, a bounded number.
MAX_COUNTED_IDS = 10_000


class ListingFeatureBuilder(TransformerMixin, BaseEstimator):
    """Raw listing columns → model columns (logs, ages, counts, location keys).

    ``fit`` learns only what must not leak from serving data: the reference day for ages (the
    latest sale seen in training) and how many listings each broker and street had.
    """

    def fit(self, X: pd.DataFrame, y: object = None) -> ListingFeatureBuilder:
        sold = pd.to_datetime(X["prev_sold_date"], errors="coerce")
        latest = sold.max()
        self.reference_year_ = float(
            2020.0 if pd.isna(latest) else latest.year + latest.day_of_year / 365.25
        )
        self.broker_counts_ = _repeated(X["brokered_by"])
        self.street_counts_ = _repeated(X["street"])
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        sold = pd.to_datetime(X["prev_sold_date"], errors="coerce")
        sold_year = sold.dt.year + sold.dt.day_of_year / 365.25
        out = pd.DataFrame(index=X.index)
        out["bed"] = pd.to_numeric(X["bed"], errors="coerce").astype(float)
        out["bath"] = pd.to_numeric(X["bath"], errors="coerce").astype(float)
        out["log_house_size"] = np.log1p(pd.to_numeric(X["house_size"], errors="coerce"))
        out["log_acre_lot"] = np.log(pd.to_numeric(X["acre_lot"], errors="coerce") + ACRE_FLOOR)
        out["years_since_sold"] = (self.reference_year_ - sold_year).astype(float)
        out["broker_listings"] = _counts(X["brokered_by"], self.broker_counts_)
        out["street_listings"] = _counts(X["street"], self.street_counts_)
        # Rooms where the living area is unknown: there they stand in for the size (about 30 %
        # per bedroom), which a linear model can only learn as a separate column.
        no_size = out["log_house_size"].isna()
        out["bed_without_size"] = out["bed"].where(no_size, 0.0)
        out["bath_without_size"] = out["bath"].where(no_size, 0.0)
        for column in ("status", "state", "city", "zip_code", "brokered_by"):
            out[column] = _category(X[column])
        out["zip3"] = out["zip_code"].str[:3].where(out["zip_code"] != MISSING_CATEGORY)
        out["zip3"] = out["zip3"].fillna(MISSING_CATEGORY)
        return out[list(OUTPUTS)]

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(OUTPUTS, dtype=object)


class IdCounts(Mapping[str, int]):
    """Listings per id, kept as two arrays. A dict is saved by skops as one JSON node per id: at
    100k rows two thirds of the saved model and of its save and load time; arrays are saved as
    two ``.npy`` files. Reads like the dict it replaces (models saved before hold a dict)."""

    def __init__(self, ids: np.ndarray, listings: np.ndarray) -> None:
        self.ids = ids
        self.listings = listings

    def series(self) -> pd.Series:
        return pd.Series(self.listings, index=self.ids)

    def __getitem__(self, key: str) -> int:
        found = np.flatnonzero(self.ids == key)
        if not len(found):
            raise KeyError(key)
        return int(self.listings[found[0]])

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids.tolist())

    def __len__(self) -> int:
        return len(self.ids)

    def items(self) -> Iterator[tuple[str, int]]:  # type: ignore[override]
        return zip(self.ids.tolist(), self.listings.tolist(), strict=True)


def _repeated(values: pd.Series) -> IdCounts:
    """Listings per id, for the MAX_COUNTED_IDS most-listed ids listed more than once. The rest
    count as listed once: kept, they made the fitted model grow with the data (105 MB at 100k
    rows; 1M rows repeat 200k random street ids by chance) for next to no signal."""
    counts = values.dropna().astype(str).value_counts()
    counts = counts[counts > 1].head(MAX_COUNTED_IDS)
    return IdCounts(np.asarray(counts.index, dtype=str), counts.to_numpy(dtype=np.int64))


def _counts(values: pd.Series, counts: Mapping[str, int]) -> pd.Series:
    """Listings with the same id: 0 when there is no id, 1 for an id listed once or never seen."""
    present = values.notna().to_numpy()
    table = counts.series() if isinstance(counts, IdCounts) else counts
    looked_up = values.astype("string").map(table).astype(float).fillna(1.0)
    return looked_up.where(present, 0.0)


def _category(values: pd.Series) -> pd.Series:
    return values.astype("string").fillna(MISSING_CATEGORY).astype(object)


def raw_frame(records: list[dict]) -> pd.DataFrame:
    """Records (clean listing dicts) → the raw feature frame the model takes, columns in order."""
    frame = pd.DataFrame.from_records(records, columns=list(FEATURES))
    return frame.astype({"bed": float, "bath": float, "acre_lot": float, "house_size": float})
