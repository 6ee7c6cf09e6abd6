"""clean_rows in memory: a failed optional field is repaired (nulled and recorded), a failed
required field still costs the row, and duplicates are judged on the repaired listing."""

from __future__ import annotations

from datetime import date

import pytest

from mlops_platform.pipelines.clean import CleanRow, RawRow, Rejection, Repair, clean_rows
from mlops_platform.schema import OPTIONAL_FIELDS, REQUIRED_FIELDS
from tests.support import RAW_LISTING

AS_OF = date(2024, 1, 1)
# A RAW row as stored: every value is the text the source sent.
ROW: dict[str, str | None] = dict(RAW_LISTING)


def _clean(*changes: dict[str, str | None]) -> tuple[list[CleanRow], list[Rejection]]:
    rows = [RawRow(7, number, {**ROW, **change}) for number, change in enumerate(changes)]
    return clean_rows(rows, as_of=AS_OF, test_fraction=0.2)


def test_an_unreadable_optional_field_is_nulled_and_the_row_kept() -> None:
    accepted, rejected = _clean({"bed": "three"})
    assert not rejected
    (row,) = accepted
    assert row.listing.bed is None
    assert row.listing.bath == 2  # the other fields as read
    assert row.repairs == (
        Repair(7, 0, "bed", "bed:invalid", "three", "bed: not a number (got 'three')"),
    )


@pytest.mark.parametrize(
    ("field", "text", "rule"),
    [
        ("prev_sold_date", "2019-13-45", "prev_sold_date:invalid"),
        ("prev_sold_date", "2090-01-01", "prev_sold_date:invalid"),  # after the batch arrived
        ("bath", "-3", "bath:greater_than_equal"),
        ("bed", "99", "bed:less_than_equal"),
        ("house_size", "-1850", "house_size:greater_than"),
        ("acre_lot", "big", "acre_lot:invalid"),
        ("brokered_by", "x" * 65, "brokered_by:string_too_long"),
    ],
)
def test_every_kind_of_optional_failure_is_a_repair(field: str, text: str, rule: str) -> None:
    accepted, rejected = _clean({field: text})
    assert not rejected
    (repair,) = accepted[0].repairs
    assert (repair.field, repair.rule, repair.original) == (field, rule, text)
    assert repair.reason.startswith(f"{field}: ")
    assert getattr(accepted[0].listing, field) is None


def test_a_bad_required_field_still_rejects_the_row_with_every_reason() -> None:
    accepted, rejected = _clean({"price": "cheap", "bed": "three"})
    assert not accepted
    assert rejected == [
        Rejection(
            7,
            0,
            "price:invalid",
            "price: not a number (got 'cheap'); bed: not a number (got 'three')",
        )
    ]


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_each_required_field_rejects(field: str) -> None:
    accepted, rejected = _clean({field: "\x00"})
    assert not accepted
    assert rejected[0].rule.startswith(f"{field}:")


def test_several_optional_fields_give_one_repair_each() -> None:
    bad = {"bed": "three", "bath": "-1", "prev_sold_date": "12/31/19"}
    accepted, _ = _clean(bad)
    assert [(r.field, r.original) for r in accepted[0].repairs] == list(bad.items())
    assert set(bad) <= set(OPTIONAL_FIELDS)


def test_us_dates_are_read_not_repaired() -> None:
    accepted, _ = _clean({"prev_sold_date": "6/14/2019"})
    assert accepted[0].repairs == ()
    assert accepted[0].listing.prev_sold_date == date(2019, 6, 14)


def test_duplicates_are_judged_on_the_repaired_listing() -> None:
    """A row whose bad bed count is nulled equals a row that sent no bed: the second is the
    duplicate, and its repair goes with it."""
    accepted, rejected = _clean({"bed": None}, {"bed": "three"})
    assert [row.row_number for row in accepted] == [0]
    assert accepted[0].repairs == ()
    assert [(r.row_number, r.rule) for r in rejected] == [(1, "duplicate")]
    assert "batch 7, row 0" in rejected[0].reason
