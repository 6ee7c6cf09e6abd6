"""Inference-log rows are encoded once, in the request, as COPY text that reads back losslessly."""

from __future__ import annotations

import json
import math
import re
from datetime import date, datetime

import numpy as np

from mlops_platform.schema import EXAMPLE_RECORD
from mlops_platform.serving.inference_log import copy_rows

_ESCAPES = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r"}


def _read_copy_text(line: bytes) -> list[str]:
    """One line of PostgreSQL's COPY text format → its column values."""
    text = line.decode()
    assert text.endswith("\n")
    return [re.sub(r"\\[\\tnr]", lambda m: _ESCAPES[m.group()], f) for f in text[:-1].split("\t")]


def test_rows_read_back_as_the_records_prices_and_model() -> None:
    odd = {**EXAMPLE_RECORD, "city": 'Back\\slash "Quoted" Ñandú', "street": "12\x0034\t"}
    records = [{**EXAMPLE_RECORD, "prev_sold_date": date(2019, 6, 14)}, odd]
    ref = {"name": "house\tprice 100%", "version": "7", "run_id": "r\\1"}
    lines = copy_rows(ref, records, np.array([325000.5, np.nan]), 12.5)

    assert len(lines) == 2
    read = [_read_copy_text(line) for line in lines]
    assert all(len(columns) == 7 for columns in read)
    logged_at, name, version, run_id, given, output, latency = read[0]
    assert datetime.fromisoformat(logged_at).tzinfo is not None
    assert (name, version, run_id, float(latency)) == ("house\tprice 100%", "7", "r\\1", 12.5)
    assert json.loads(given) == EXAMPLE_RECORD  # the date as the ISO text model_dump gives
    assert json.loads(output) == {"price": 325000.5}
    assert json.loads(read[1][4]) == {**odd, "street": "12\ufffd34\t"}  # PostgreSQL has no NUL
    assert json.loads(read[1][5]) == {"price": None}  # NaN is JSON null, as before
    assert not math.isnan(float(read[1][6]))


def test_no_records_no_rows() -> None:
    assert copy_rows({"name": "m", "version": "1", "run_id": "r"}, [], np.empty(0), 1.0) == []
