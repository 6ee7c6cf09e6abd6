"""Hostile data-source answers (huge numbers, any unicode, nested values, NaN, odd keys, big
batches) through the client's parsing and the cleaning rules: nothing crashes, and every row is
accounted for — kept or rejected with a rule, never lost (issue 17's fuzzing). No platform
needed: these run the client's parser and the cleaning rules in process."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_platform.datasource.client import DataSourceError, parse_batch
from mlops_platform.datasource.simulator import SimulatorConfig, generate_batch
from mlops_platform.pipelines.clean import RawRow, clean_rows
from mlops_platform.pipelines.ingest import as_text
from mlops_platform.schema import FIELDS
from tests.reliability.conftest import Scenario

pytestmark = pytest.mark.reliability
EXAMPLES = 300  # per hypothesis test

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["", " ", "1e309", "-0", "0x10", "３", "NaN", "2019-02-30", "12/31/2099"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
RECORDS = st.dictionaries(
    st.sampled_from(FIELDS) | st.text(max_size=8), VALUES, max_size=len(FIELDS) + 3
)


def _body(records: list[Any]) -> str:
    payload = {"group_number": 1, "day": "Wednesday", "batch_number": 1, "data": records}
    return json.dumps(payload, allow_nan=True, ensure_ascii=False)


def _accounted(records: list[dict[str, Any]]) -> tuple[int, int]:
    """As RAW stores the records (text as sent), cleaned: each row once, kept or rejected.
    Returns (kept, rejected)."""
    rows = [
        RawRow(7, number, {key: as_text(value) for key, value in record.items()})
        for number, record in enumerate(records)
    ]
    kept, rejected = clean_rows(rows, as_of=date(2026, 12, 1), test_fraction=0.2)
    numbers = sorted([row.row_number for row in kept] + [r.row_number for r in rejected])
    assert numbers == list(range(len(records))), "a row was lost or counted twice"
    assert all(r.rule and r.reason for r in rejected), "every rejection names its rule"
    return len(kept), len(rejected)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(RECORDS | VALUES, max_size=20))
def test_any_answer_is_parsed_or_refused_with_a_reason(data: list[Any]) -> None:
    """A list holding anything but records is refused, naming the first bad item; otherwise
    every record comes through and is accounted for."""
    if not all(isinstance(item, dict) for item in data):
        with pytest.raises(DataSourceError, match=r"data\[\d+\] is a"):
            parse_batch(_body(data), "http://source", 1, "Wednesday")
        return
    batch = parse_batch(_body(data), "http://source", 1, "Wednesday")
    assert len(batch.records) == len(data)
    _accounted(batch.records)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(RECORDS, min_size=1, max_size=20))
def test_hostile_records_are_each_kept_or_rejected(records: list[dict[str, Any]]) -> None:
    """Hostile records (huge numbers, unicode, nested values, odd keys): each kept or rejected."""
    batch = parse_batch(_body(records), "http://source", 1, "Wednesday")
    _accounted(batch.records)


NESTED = '{"group_number": 1, "day": "Wednesday", "batch_number": 1, "data": [%s]}' % (
    "[" * 100_000 + "]" * 100_000
)


@pytest.mark.parametrize(
    "body", ["", "{", "[]", "null", '{"data": 5}', "\ufeff{}", "{" * 10_000, NESTED]
)
def test_broken_documents_are_refused_with_a_reason(body: str) -> None:
    """A broken document is refused with a reason (DataSourceError), not a crash.

    Including JSON nested 100,000 deep, which the json module cannot read (RecursionError)."""
    with pytest.raises(DataSourceError):
        parse_batch(body, "http://source", 1, "Wednesday")


def test_a_100k_row_batch_is_parsed_and_cleaned_whole(scenario: Scenario) -> None:
    records = generate_batch(SimulatorConfig(batch_size=100_000, dirty_rate=0.1), 1, "Wednesday", 1)
    batch = parse_batch(_body(records), "http://source", 1, "Wednesday")
    assert len(batch.records) == 100_000
    kept, rejected = _accounted(batch.records)
    scenario.report(
        f"100,000 rows (10 % dirty): {kept:,} kept + {rejected:,} rejected with a rule, 0 lost",
        rows=100_000,
        kept=kept,
        rejected=rejected,
    )
