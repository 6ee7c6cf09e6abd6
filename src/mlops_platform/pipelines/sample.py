"""Fixed, spread-out row samples: a pure function of each row's key, so every run picks the same."""

from __future__ import annotations

import numpy as np
import pandas as pd


def uniform(row_keys: pd.Series, digits: slice) -> np.ndarray:
    """A number in [0, 1) per row from some hex digits of its key: a pure function of the row."""
    return row_keys.str[digits].map(lambda h: int(h, 16) / 16 ** len(h)).to_numpy()


def at_most(rows: pd.DataFrame, limit: int) -> pd.DataFrame:
    """A fixed, spread-out sample of about ``limit`` rows (all of them when fewer): every batch
    keeps its share, so the recency weights still apply."""
    if len(rows) <= limit:
        return rows
    return rows[uniform(rows["row_key"], slice(-16, -8)) < limit / len(rows)]
