"""Reading CLEAN listings into pandas, fast (COPY ... TO STDOUT, then ``read_csv``)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Engine, func, select

from mlops_platform.schema import FIELDS
from mlops_platform.storage.tables import clean_listings

COLUMNS: tuple[str, ...] = ("batch_id", "row_key", "split", *FIELDS)
_ROW_KEY_HEX = "replace(row_key::text, '-', '') AS row_key"
_DTYPES = {
    "batch_id": "int64",
    "row_key": "string",
    "split": "string",
    "brokered_by": "string",
    "status": "string",
    "price": "float64",
    "bed": "float64",
    "bath": "float64",
    "acre_lot": "float64",
    "street": "string",
    "city": "string",
    "state": "string",
    "zip_code": "string",
    "house_size": "float64",
    "prev_sold_date": "string",
}


@dataclass(frozen=True)
class DataVersion:
    """What CLEAN holds: the newest batch cleaned and the row count up to it."""

    max_batch_id: int
    rows: int

    @property
    def label(self) -> str:
        return f"batch-{self.max_batch_id}"


def data_version(clean: Engine) -> DataVersion | None:
    with clean.connect() as conn:
        newest, rows = conn.execute(select(func.max(clean_listings.c.batch_id), func.count())).one()
    return None if newest is None else DataVersion(int(newest), int(rows))


def first_batch_id(clean: Engine) -> int | None:
    with clean.connect() as conn:
        first = conn.execute(select(func.min(clean_listings.c.batch_id))).scalar()
    return None if first is None else int(first)


def load_listings(
    clean: Engine,
    *,
    after_batch: int | None = None,
    up_to_batch: int | None = None,
    split: str | None = None,
) -> pd.DataFrame:
    """Clean listings with ``after_batch < batch_id <= up_to_batch`` (of one ``split`` when
    given: "train" or "test"), in a stable order."""
    conditions = []
    if after_batch is not None:
        conditions.append(f"batch_id > {int(after_batch)}")
    if up_to_batch is not None:
        conditions.append(f"batch_id <= {int(up_to_batch)}")
    if split is not None:
        if split not in ("train", "test"):
            raise ValueError(f"split is 'train' or 'test', not {split!r}")
        conditions.append(f"split = '{split}'")
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    # row_key as its 32 hex digits (a uuid's text has dashes), as clean.row_key gives it.
    selected = ", ".join(_ROW_KEY_HEX if name == "row_key" else name for name in COLUMNS)
    query = (
        f"COPY (SELECT {selected} FROM clean_data.listings {where} "
        "ORDER BY batch_id, row_number) TO STDOUT WITH (FORMAT csv, HEADER)"
    )
    buffer = io.BytesIO()
    with clean.connect() as conn:
        driver = conn.connection.driver_connection
        with driver.cursor() as cursor, cursor.copy(query) as copy:
            for chunk in copy:
                buffer.write(chunk)
    buffer.seek(0)
    frame = pd.read_csv(buffer, dtype=_DTYPES, keep_default_na=False, na_values=[""])
    return frame.astype({c: object for c, t in _DTYPES.items() if t == "string"})
