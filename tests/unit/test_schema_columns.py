"""The column-wise path agrees with the per-record pydantic path on every dirty record.

Hypothesis generates batches of messy records — numbers as text, every spelling of "no value",
US and ISO dates, future and ancient dates, state codes and names, bad zips, out-of-range and
boundary numbers, control characters, booleans, lists — and checks that ``check_columns`` and
``clean_rows`` (column-wise) give exactly what ``Listing.model_validate`` and ``validate_row``
(record by record) give: accept or reject, every rule code and sentence, every repair, every
normalised value, the same duplicates and the same split.
"""

from __future__ import annotations

import copy
import math
from datetime import date, timedelta
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mlops_platform import schema, schema_columns
from mlops_platform.datasource.simulator import SimulatorConfig, generate_batch
from mlops_platform.pipelines.clean import (
    CleanRow,
    RawRow,
    Rejection,
    _in_test,
    clean_rows,
    listing_identity,
    row_key,
    split_of,
    validate_row,
)
from mlops_platform.pipelines.ingest import as_text
from mlops_platform.schema import (
    FIELDS,
    MAX_ACRES,
    MAX_HOUSE_SIZE,
    MAX_PRICE,
    MAX_ROOMS,
    OPTIONAL_FIELDS,
    STATE_CODES,
    Listing,
    field_failures,
)
from mlops_platform.schema_columns import SchemaDrift, check_columns, fast_paths
from tests.support import RAW_LISTING

GOOD: dict[str, str] = RAW_LISTING

# --- dirty text, as RAW holds it ------------------------------------------------------------------
MISSING = ["", " ", "  \t", "NaN", "nan", "NAN", "null", "None", "NA", "n/a", "N/A", " NaN "]
BOUNDS = [
    "0",
    "-0",
    "-0.0",
    "0.0",
    "1",
    "-1",
    str(MAX_ROOMS),
    str(MAX_ROOMS + 1),
    f"{MAX_ROOMS}.0",
    "2.5",
    repr(MAX_PRICE),
    str(int(MAX_PRICE)),
    repr(MAX_PRICE + 1),
    "1e9",
    "1E9",
    "1e+09",
    repr(MAX_ACRES),
    repr(MAX_HOUSE_SIZE),
    repr(MAX_HOUSE_SIZE * 1.5),
    "1e-99",
    "1e99",
    "9" * 20 + "." + "9" * 20 + "e99",
    "1" * 400,
    "inf",
    "-inf",
    "Infinity",
    "1,000",
    "+5",
    "1_000",
    ".5",
    "5.",
    " 3 ",
    "3.0000000000000004",
    "\u0663",  # an Arabic-Indic three: float() reads it
    "0x10",
]
WORDS = [
    "cheap",
    "three",
    "call agent",
    "n.a.",
    "true",
    "false",
    "True",
    '["Austin"]',
    "[]",
    "{}",
    '{"a": 1}',
    "Aus\x00tin",
    "New\tYork\n",
    "San  Juan",
    "  san   juan ",
    "\x01",
    "São Paulo",
    "x" * 65,
    "y" * 81,
    'O\'Fallon, "The" \\ City',
]
DATES = [
    "2019-06-14",
    "6/14/2019",
    "06/14/2019",
    "2019-06-14T00:00:00",
    "2019-06-14 13:45:00+02:00",
    "14/6/2019",
    "6/31/2019",
    "2019/06/14",
    "6-14-2019",
    "2019-13-45",
    "2021-02-29",
    "2020-02-29",
    "12/31/19",
    "1899-12-31",
    "1900-01-01",
    "2025-12-31",
    "2026-01-01",
    "2026-01-02",
    "2090-01-01",
    "yesterday",
]
STATES = ["TX", "tx", "Texas", "TEXAS", " pr ", "Puerto Rico", "XX", "Atlantis", "Ontario"]
ZIPS = ["601", "601.0", "00601", "78701", "78701-1234", "ABC12", "00000", "1234567", "12-345"]
STATUSES = ["for_sale", "For Sale", "for-sale", "SOLD", "ready to build", "pending"]
IDS = ["103378", "103378.0", "103378.00", "0012", "12.5", " 7 ", "1" * 64, "1" * 65 + ".0"]

any_text = st.one_of(
    st.sampled_from(MISSING + BOUNDS + WORDS + DATES + STATES + ZIPS + STATUSES + IDS),
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(-1e10, 1e10).map(lambda f: f"{f:.3f}"),
    st.integers(1, 99999).map(lambda z: f"{z}.0"),
    st.dates(date(1850, 1, 1), date(2100, 12, 31)).map(date.isoformat),
    st.dates(date(1850, 1, 1), date(2100, 12, 31)).map(lambda d: f"{d.month}/{d.day}/{d.year}"),
    st.sampled_from(sorted([*STATE_CODES, *STATE_CODES.values()])),
    st.text(max_size=12),
)
_ints = st.integers
_spellings = st.sampled_from(["{}", "{}.0", " {} "])
VALID_TEXT: dict[str, st.SearchStrategy[str | None]] = {  # valid, in the ways sources write it
    "brokered_by": st.one_of(
        st.none(), _ints(0, 10**7).map(str), _ints(0, 10**7).map("{}.0".format)
    ),
    "status": st.sampled_from(["for_sale", "sold", "ready_to_build", "For Sale", "SOLD"]),
    "price": st.one_of(_ints(1, 10**9).map(str), st.floats(0.01, MAX_PRICE).map(repr)),
    "bed": st.one_of(
        st.none(), st.tuples(_spellings, _ints(0, MAX_ROOMS)).map(lambda t: t[0].format(t[1]))
    ),
    "bath": st.one_of(st.none(), _ints(0, MAX_ROOMS).map(str)),
    "acre_lot": st.one_of(st.none(), st.floats(0, MAX_ACRES).map(repr)),
    "street": st.one_of(st.none(), _ints(0, 2 * 10**6).map("{}.0".format)),
    "city": st.one_of(
        st.sampled_from(["Austin", "san juan", "  NEW   york ", "O'Fallon", "St. Louis"]),
        st.text("abcdefg XYZ-'", min_size=1, max_size=20).filter(str.strip),
    ),
    "state": st.sampled_from(sorted([*STATE_CODES, *STATE_CODES.values()])),
    "zip_code": st.tuples(_spellings, _ints(1, 99999)).map(lambda t: t[0].format(t[1])),
    "house_size": st.one_of(
        st.none(), st.floats(1, MAX_HOUSE_SIZE).map(repr), _ints(1, 99999).map(str)
    ),
    "prev_sold_date": st.one_of(
        st.none(),
        st.dates(date(1900, 1, 1), date(2019, 1, 1)).map(date.isoformat),
        st.dates(date(1900, 1, 1), date(2019, 1, 1)).map(lambda d: f"{d.month}/{d.day}/{d.year}"),
    ),
}
# Each field is dirty about one time in four: most records keep most fields, so rows are kept,
# repaired and rejected in the same batch.
FIELD_TEXT: dict[str, st.SearchStrategy[str | None]] = {
    name: st.integers(0, 3).flatmap(
        lambda clean, name=name: VALID_TEXT[name] if clean else st.one_of(st.none(), any_text)
    )
    for name in FIELDS
}


@st.composite
def raw_batches(draw: st.DrawFn) -> list[dict[str, str | None]]:
    """A few distinct dirty records, then a batch drawn from them (so duplicates happen)."""
    pool = draw(
        st.lists(
            st.fixed_dictionaries({name: FIELD_TEXT[name] for name in FIELDS}),
            min_size=1,
            max_size=12,
        )
    )
    picks = draw(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=30))
    return [pool[i] for i in picks]


# --- values of any JSON type, as an API request holds them -------------------------------------
json_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 601.0, 103378.0, 3.0, 2.5, 1e9, 1e9 + 1]),
    any_text,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)


VALID_JSON: dict[str, st.SearchStrategy[Any]] = {  # valid, as JSON types
    **VALID_TEXT,
    "brokered_by": st.one_of(VALID_TEXT["brokered_by"], _ints(0, 10**7).map(float)),
    "price": st.one_of(_ints(1, 10**9), st.floats(0.01, MAX_PRICE)),
    "bed": st.one_of(st.none(), _ints(0, MAX_ROOMS), _ints(0, MAX_ROOMS).map(float)),
    "bath": st.one_of(st.none(), _ints(0, MAX_ROOMS)),
    "acre_lot": st.one_of(st.none(), st.floats(0, MAX_ACRES), st.just(0)),
    "street": st.one_of(st.none(), _ints(0, 2 * 10**6).map(float)),
    "zip_code": st.one_of(_ints(1, 99999), _ints(1, 99999).map(float)),
    "house_size": st.one_of(st.none(), st.floats(1, MAX_HOUSE_SIZE)),
    "prev_sold_date": st.one_of(
        VALID_TEXT["prev_sold_date"], st.dates(date(1900, 1, 1), date(2019, 1, 1))
    ),
}


def _same(a: Any, b: Any) -> bool:
    """Equal, of the same type, and the same float sign (str(-0.0) differs from str(0.0))."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    return a == b


def _record_verdict(record: dict[str, Any], as_of: date) -> tuple[list, dict[str, Any] | None]:
    """(failures, values) as the per-record path sees the record; values of the fields that did
    not fail, read with the failed ones replaced by a valid value."""
    context = {"as_of": as_of}
    try:
        return [], Listing.model_validate(record, context=context).model_dump()
    except ValidationError as error:
        failures = field_failures(error)
    failed = {failure.field for failure in failures}
    patched = {
        **record,
        **{name: None if name in OPTIONAL_FIELDS else GOOD[name] for name in failed},
    }
    values = Listing.model_validate(patched, context=context).model_dump()
    return failures, {name: None if name in failed else values[name] for name in FIELDS}


def _assert_columns_agree(records: list[dict[str, Any]], as_of: date) -> None:
    columns = {name: [record[name] for record in records] for name in FIELDS}
    checked = check_columns(columns, as_of=as_of)
    for row, record in enumerate(records):
        failures, values = _record_verdict(record, as_of)
        assert checked.failures(row) == failures, record
        assert _same(checked.values(row), values), (record, checked.values(row), values)


def _reference_clean(
    rows: list[RawRow], as_of: date, test_fraction: float
) -> tuple[list[CleanRow], list[Rejection]]:
    """The per-record clean: validate_row, then duplicates and the split, row by row."""
    accepted, rejections = [], []
    first_seen: dict[str, tuple[int, int]] = {}
    for row in rows:
        checked = validate_row(row, {"as_of": as_of})
        if isinstance(checked, Rejection):
            rejections.append(checked)
            continue
        listing, repairs = checked
        key = row_key(listing)
        if key in first_seen:
            earlier = first_seen[key]
            rejections.append(
                Rejection(
                    row.batch_id,
                    row.row_number,
                    "duplicate",
                    f"exact duplicate of the listing in batch {earlier[0]}, row {earlier[1]}",
                )
            )
            continue
        first_seen[key] = (row.batch_id, row.row_number)
        split = split_of(listing_identity(listing), test_fraction)
        accepted.append(CleanRow(row.batch_id, row.row_number, listing, key, split, repairs))
    return accepted, rejections


def _assert_clean_agrees(records: list[dict[str, Any]], as_of: date) -> None:
    rows = [RawRow(3, 10 + i, record) for i, record in enumerate(records)]
    accepted, rejections = clean_rows(rows, as_of=as_of, test_fraction=0.3)
    expected, expected_rejections = _reference_clean(rows, as_of, 0.3)
    for kind, seen in (
        ("a row kept", accepted),
        ("a row repaired", [row for row in accepted if row.repairs]),
        ("a row rejected", [r for r in rejections if r.rule != "duplicate"]),
        ("a duplicate", [r for r in rejections if r.rule == "duplicate"]),
        ("both splits", {row.split for row in accepted} == {"train", "test"}),
    ):
        event(f"{kind}: {bool(seen)}")
    assert rejections == expected_rejections
    assert len(accepted) == len(expected)
    for got, want in zip(accepted, expected, strict=True):
        assert (got.batch_id, got.row_number, got.row_key, got.split, got.repairs) == (
            want.batch_id,
            want.row_number,
            want.row_key,
            want.split,
            want.repairs,
        )
        assert _same(got.listing.model_dump(), want.listing.model_dump())
        assert got.as_tuple() == want.as_tuple()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_batches(), st.dates(date(2019, 1, 1), date(2030, 1, 1)))
@example([GOOD], date(2026, 1, 1))
def test_raw_text_batches_agree_with_the_record_path(
    records: list[dict[str, str | None]], as_of: date
) -> None:
    _assert_columns_agree(records, as_of)
    _assert_clean_agrees(records, as_of)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                name: st.integers(0, 3).flatmap(
                    lambda clean, name=name: VALID_JSON[name] if clean else json_value
                )
                for name in FIELDS
            }
        ),
        min_size=1,
        max_size=20,
    )
)
def test_json_typed_batches_agree_with_the_record_path(records: list[dict[str, Any]]) -> None:
    """Numbers, booleans, lists and objects as a JSON request holds them: the generic route."""
    _assert_columns_agree(records, date(2026, 1, 1))
    _assert_clean_agrees(records, date(2026, 1, 1))


@settings(max_examples=100, deadline=None)
@given(raw_batches())
def test_arrow_columns_and_lists_give_the_same_verdicts(
    records: list[dict[str, str | None]],
) -> None:
    as_of = date(2026, 1, 1)
    lists = check_columns({n: [r[n] for r in records] for n in FIELDS}, as_of=as_of)
    arrow = check_columns(
        {n: pa.array([r[n] for r in records], pa.string()) for n in FIELDS}, as_of=as_of
    )
    for row in range(len(records)):
        assert lists.failures(row) == arrow.failures(row)
        assert _same(lists.values(row), arrow.values(row))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.from_regex(r"-?[0-9]{1,20}(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,2})?", fullmatch=True),
            st.floats(allow_nan=False, allow_infinity=False).map(repr),
            st.integers(0, 10**30).map(str),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_the_number_fast_path_reads_what_float_reads(texts: list[str]) -> None:
    """Every plain decimal the fast path takes is parsed as float() parses it (to the bit)."""
    rows = len(texts)
    columns = {name: [GOOD[name]] * rows for name in FIELDS}
    for name in ("price", "acre_lot", "house_size", "bed"):
        checked = check_columns({**columns, name: texts}, as_of=date(2026, 1, 1))
        for row, text in enumerate(texts):
            failures, values = _record_verdict({**GOOD, name: text}, date(2026, 1, 1))
            assert checked.failures(row) == failures
            assert _same(checked.values(row)[name], values[name]), text


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.from_regex(r"[0-9]{1,70}(\.0{1,4})?", fullmatch=True),
            st.from_regex(r"[0-9.]{1,8}", fullmatch=True),  # 12., 1.0.0, .0, 12..0, 0.00
            st.sampled_from(["12.", "12..0", "1.0.0", ".0", "0.0", "12.50", "12.0 ", "٣.0"]),
            st.integers(0, 10**9).map("{}.0".format),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_the_identifier_fast_path_reads_what_the_validator_reads(texts: list[str]) -> None:
    """Ids as digits or digits.0…, within max_length or not, and texts that only look like it."""
    rows = len(texts)
    columns = {name: [GOOD[name]] * rows for name in FIELDS}
    for name in ("brokered_by", "street"):
        checked = check_columns({**columns, name: texts}, as_of=date(2026, 1, 1))
        for row, text in enumerate(texts):
            failures, values = _record_verdict({**GOOD, name: text}, date(2026, 1, 1))
            assert checked.failures(row) == failures
            assert _same(checked.values(row)[name], values[name]), text


# --- the date fast path ---------------------------------------------------------------------------
LEAP_DAYS = [f"{year:04d}-02-29" for year in (1, 4, 100, 1900, 1996, 2000, 2019, 2020, 2100, 2400)]
ODD_DATES = [
    "0000-01-01",
    "0001-01-01",
    "9999-12-31",
    "2019-00-10",
    "2019-01-00",
    "2019-04-31",
    "2019-06-31",
    "2019-12-32",
    "2019-13-01",
    "2019-6-14",
    "2019-06-14 ",
    " 2019-06-14",
    "2019-06-14\n",
    "2019-06-14T00:00:00",
    "2019-06-14T23:59:59+14:00",
    "2019-06-14junk",
    "20190614",
    "2019-W24-5",
    "2019/06/14",
    "\u0662\u0660\u0661\u0669-06-14",  # Arabic-Indic digits: not the fast path's shape
    "２０１９-06-14",  # fullwidth digits
    "1899-12-31",
    "1900-01-01",
    "1900-01-02",
    "6/14/2019",
    "06/14/2019",
    "2/29/2020",
    "2/29/2019",
    "13/1/2019",
    "0/1/2019",
]
date_text = st.one_of(
    st.sampled_from(LEAP_DAYS + ODD_DATES),
    st.dates(date(1, 1, 1), date(9999, 12, 31)).map(date.isoformat),
    st.dates(date(1880, 1, 1), date(2040, 12, 31)).map(date.isoformat),
    st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", fullmatch=True),  # mostly no real day
    st.tuples(_ints(0, 9999), _ints(0, 19), _ints(0, 39)).map(
        lambda t: f"{t[0]:04d}-{t[1]:02d}-{t[2]:02d}"
    ),
    st.tuples(_ints(0, 13), _ints(0, 32), _ints(1850, 2100)).map(lambda t: f"{t[0]}/{t[1]}/{t[2]}"),
    st.dates(date(1880, 1, 1), date(2040, 12, 31)).map(lambda d: f"{d}T12:00:00"),
    st.text("0123456789-/T: ", max_size=12),
)


def _assert_dates_agree(texts: list[str], as_of: date | None) -> None:
    rows = len(texts)
    columns = {name: [GOOD[name]] * rows for name in FIELDS}
    for kind in ("list", "arrow"):
        column = texts if kind == "list" else pa.array(texts, pa.string())
        checked = check_columns({**columns, "prev_sold_date": column}, as_of=as_of)
        for row, text in enumerate(texts):
            failures, values = _record_verdict({**GOOD, "prev_sold_date": text}, as_of)
            assert checked.failures(row) == failures, text
            assert _same(checked.values(row)["prev_sold_date"], values["prev_sold_date"]), text


@settings(max_examples=400, deadline=None)
@given(
    st.lists(date_text, min_size=1, max_size=40),
    st.one_of(
        st.dates(date(1899, 12, 30), date(2040, 12, 31)),
        st.sampled_from([date(1900, 1, 1), date(2019, 6, 14), date(2020, 2, 29)]),
    ),
)
def test_the_date_fast_path_gives_what_the_validator_gives(texts: list[str], as_of: date) -> None:
    """ISO days, leap days, days that do not exist, US dates, datetimes, odd digits, around
    MIN_SOLD_DATE and around ``as_of`` (the with-info rule): every verdict and value the same."""
    texts += [as_of.isoformat(), (as_of + timedelta(days=1)).isoformat()]
    for text in texts:
        event(f"a plain ISO day: {text in _plain_iso_days(texts)}")
    _assert_dates_agree(texts, as_of)


def _plain_iso_days(texts: list[str]) -> set[str]:
    days = set()
    for text in texts:
        try:
            if len(text) == 10 and text.isascii():
                date.fromisoformat(text)
                days.add(text)
        except ValueError:
            pass
    return days


def test_the_date_fast_path_without_as_of_judges_by_today() -> None:
    today = date.today()
    texts = [
        str(today),
        str(today - timedelta(days=1)),
        str(today + timedelta(days=1)),
        "2999-01-01",
        "1899-12-31",
        "1900-01-01",
    ]
    _assert_dates_agree(texts, None)


def test_plain_iso_days_skip_the_validator(monkeypatch) -> None:
    """The fast path is taken: of 500 distinct valid days only the drift sample (8) goes through
    pydantic; the days it refuses (future, before 1900, not a day) all do, and are worded by it."""
    calls: list[Any] = []
    real = schema_columns._Rule.exact

    def counted(rule, value, context):
        if rule.name == "prev_sold_date":
            calls.append(value)
        return real(rule, value, context)

    monkeypatch.setattr(schema_columns._Rule, "exact", counted)
    days = [(date(2000, 1, 1) + timedelta(days=i)).isoformat() for i in range(500)]
    refused = ["2030-01-01", "1899-12-31", "2019-02-29", "6/14/2019"]
    columns = {name: [GOOD[name]] * 504 for name in FIELDS}
    checked = check_columns(
        {**columns, "prev_sold_date": pa.array(days + refused)}, as_of=date(2026, 1, 1)
    )
    assert len(calls) == schema_columns._SAMPLE + len(refused)
    assert set(refused) <= set(calls)
    assert checked.values(0)["prev_sold_date"] == date(2000, 1, 1)
    assert [f.rule for f in checked.failures(500)] == ["prev_sold_date:invalid"]
    assert "is in the future" in checked.failures(500)[0].reason
    assert "is before 1900-01-01" in checked.failures(501)[0].reason
    assert checked.values(503)["prev_sold_date"] == date(2019, 6, 14)


@settings(max_examples=300)
@given(
    st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=50),
    st.sampled_from([0.0, 0.2, 0.25, 0.3, 1 / 3, 0.5, 1.0]),
)
def test_the_vectorised_split_is_split_of(digests: list[bytes], fraction: float) -> None:
    # Digests whose first 60 bits sit right at the threshold, where rounding would show.
    edge = int(fraction * 16**15)
    digests += [
        ((edge + delta) << 4).to_bytes(8, "big") + bytes(24)
        for delta in (-2, -1, 0, 1, 2)
        if 0 <= edge + delta < 2**60
    ]
    expected = [split_of(digest.hex(), fraction) == "test" for digest in digests]
    assert _in_test(digests, fraction).tolist() == expected


def test_the_high_cardinality_fields_have_fast_paths() -> None:
    """Read from the model: if a schema change takes one away, cleaning slows down, so say so."""
    assert fast_paths() == {
        "brokered_by": "identifier",
        "price": "number",
        "bed": "number",
        "bath": "number",
        "acre_lot": "number",
        "street": "identifier",
        "house_size": "number",
        "prev_sold_date": "date",
    }


def test_a_fast_path_that_drifts_from_the_schema_is_caught(monkeypatch) -> None:
    """Each call re-validates a sample of what the fast paths accepted with the field's own
    validator; a difference stops cleaning instead of writing a value the schema would not."""
    real = schema_columns._fast

    def drifted(rule, dictionary):
        accepted, values = real(rule, dictionary)
        if rule.name == "price":
            values = [None if v is None else v * 1000 for v in values]
        return accepted, values

    monkeypatch.setattr(schema_columns, "_fast", drifted)
    with pytest.raises(SchemaDrift, match="price: the number fast path read '325000'"):
        check_columns({name: [GOOD[name]] for name in FIELDS}, as_of=date(2026, 1, 1))


def test_columns_must_be_complete_and_of_one_length() -> None:
    columns = {name: [GOOD[name]] for name in FIELDS}
    with pytest.raises(ValueError, match="missing: price"):
        check_columns({k: v for k, v in columns.items() if k != "price"})
    with pytest.raises(ValueError, match="differ in length"):
        check_columns({**columns, "city": ["Austin", "Boston"]})


def test_records_lacking_keys_or_with_unknown_ones_agree_too() -> None:
    as_of = date(2026, 1, 1)
    records = [
        {k: v for k, v in GOOD.items() if k != "price"},  # a required key missing
        {k: v for k, v in GOOD.items() if k not in OPTIONAL_FIELDS},  # only the required ones
        {**GOOD, "garage": "2"},  # an unknown key
        GOOD,
    ]
    rows = [RawRow(1, i, record) for i, record in enumerate(records)]
    assert clean_rows(rows, as_of=as_of, test_fraction=0.2) == _reference_clean(rows, as_of, 0.2)


def test_a_big_batch_of_simulator_rows_agrees() -> None:
    """The simulator's own dirt at scale (every dirty kind, duplicates), as RAW text."""
    records = generate_batch(SimulatorConfig(batch_size=3000, dirty_rate=0.2), 1, "Monday", 2)
    rows = [
        RawRow(5, i, {name: as_text(record.get(name)) for name in FIELDS})
        for i, record in enumerate(records)
    ]
    as_of = date(2026, 1, 1)
    assert clean_rows(rows, as_of=as_of, test_fraction=0.2) == _reference_clean(rows, as_of, 0.2)


def test_a_rule_the_fast_paths_do_not_know_turns_them_off() -> None:
    """The fast paths read the field's normaliser, type and bounds from the core schema; any other
    step there (a new validator, a new constraint) leaves the field to its validator alone."""
    price = Listing.__pydantic_core_schema__["schema"]["fields"]["price"]["schema"]
    shape = schema_columns._read_shape(price)
    assert shape.understood
    assert (shape.normalise, shape.type) == (schema._number, "float")
    assert sorted(shape.constraints) == [("gt", 0), ("le", MAX_PRICE)]
    extra = {
        "type": "function-after",
        "function": {"type": "no-info", "function": lambda value: value},
        "schema": price,
    }
    assert not schema_columns._read_shape(extra).understood
    multiple = copy.deepcopy(price)
    multiple["schema"]["schema"]["schema"] = {"type": "float", "multiple_of": 5}  # under _number
    assert not schema_columns._read_shape(multiple).understood
