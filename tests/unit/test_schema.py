"""The listing schema: messy-but-valid values normalise; each rule rejects with its reason."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from mlops_platform.schema import (
    FEATURES,
    FIELDS,
    OPTIONAL_FIELDS,
    REQUIRED_FIELDS,
    STATE_CODES,
    Listing,
    ListingFeatures,
    field_failures,
    validation_reasons,
)

AS_OF = {"as_of": date(2026, 1, 1)}
GOOD: dict[str, Any] = {
    "brokered_by": "103378.0",
    "status": "for_sale",
    "price": "105000.0",
    "bed": "3.0",
    "bath": 2,
    "acre_lot": 0.12,
    "street": 1962661.0,
    "city": "  san   juan ",
    "state": "PR",
    "zip_code": 601.0,
    "house_size": "920",
    "prev_sold_date": "2019-06-14",
}


def _reasons(**changes: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as error:
        Listing.model_validate({**GOOD, **changes}, context=AS_OF)
    return validation_reasons(error.value)


def test_messy_valid_values_normalise() -> None:
    listing = Listing.model_validate(GOOD, context=AS_OF)
    assert listing.model_dump() == {
        "brokered_by": "103378",
        "status": "for_sale",
        "price": 105000.0,
        "bed": 3,
        "bath": 2,
        "acre_lot": 0.12,
        "street": "1962661",
        "city": "San Juan",
        "state": "Puerto Rico",
        "zip_code": "00601",
        "house_size": 920.0,
        "prev_sold_date": date(2019, 6, 14),
    }


@pytest.mark.parametrize("missing", [None, float("nan"), "NaN", "", "  ", "null"])
def test_optional_values_may_be_missing_in_any_spelling(missing: Any) -> None:
    listing = Listing.model_validate(
        {**GOOD, "bed": missing, "house_size": missing, "prev_sold_date": missing}, context=AS_OF
    )
    assert (listing.bed, listing.house_size, listing.prev_sold_date) == (None, None, None)


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"price": -5}, "price:greater_than"),
        ({"price": 0}, "price:greater_than"),
        ({"price": 5e12}, "price:less_than_equal"),
        ({"price": float("nan")}, "price:missing"),
        ({"price": "cheap"}, "price:invalid"),
        ({"bed": 99}, "bed:less_than_equal"),
        ({"bed": "2.5"}, "bed:invalid"),
        ({"bath": -1}, "bath:greater_than_equal"),
        ({"house_size": -10}, "house_size:greater_than"),
        ({"house_size": 1e9}, "house_size:less_than_equal"),
        ({"acre_lot": -0.5}, "acre_lot:greater_than_equal"),
        ({"zip_code": "ABC12"}, "zip_code:invalid"),
        ({"zip_code": "1234567"}, "zip_code:invalid"),
        ({"state": "Atlantis"}, "state:invalid"),
        ({"status": "rented"}, "status:invalid"),
        ({"city": None}, "city:missing"),
        ({"prev_sold_date": "2099-01-01"}, "prev_sold_date:invalid"),
        ({"prev_sold_date": "last year"}, "prev_sold_date:invalid"),
    ],
)
def test_each_rule_rejects_with_a_named_reason(changes: dict[str, Any], rule: str) -> None:
    reasons = _reasons(**changes)
    assert reasons[0][0] == rule
    field = rule.split(":")[0]
    assert reasons[0][1].startswith(f"{field}: ")
    assert repr(changes[field])[:10] in reasons[0][1]


def test_reasons_come_in_field_order() -> None:
    reasons = _reasons(zip_code="x", price=-1, state="Atlantis")
    assert [rule.split(":")[0] for rule, _ in reasons] == ["price", "state", "zip_code"]


def test_future_is_relative_to_the_given_day() -> None:
    record = {**GOOD, "prev_sold_date": "2025-06-01"}
    Listing.model_validate(record, context={"as_of": date(2025, 6, 1)})
    with pytest.raises(ValidationError):
        Listing.model_validate(record, context={"as_of": date(2025, 5, 31)})


@pytest.mark.parametrize(("code", "name"), sorted(STATE_CODES.items()))
def test_state_codes_and_names_both_normalise(code: str, name: str) -> None:
    for spelling in (code, code.lower(), name, name.upper()):
        assert Listing.model_validate({**GOOD, "state": spelling}, context=AS_OF).state == name


@given(st.integers(min_value=1, max_value=99999))
def test_zip_codes_keep_leading_zeros(zip_number: int) -> None:
    expected = f"{zip_number:05d}"
    for sent in (zip_number, float(zip_number), f"{zip_number}.0", expected):
        listing = Listing.model_validate({**GOOD, "zip_code": sent}, context=AS_OF)
        assert listing.zip_code == expected


def test_api_request_model_is_the_features_without_price() -> None:
    assert tuple(ListingFeatures.model_fields) == FEATURES
    assert set(Listing.model_fields) == set(FIELDS)
    features = {k: v for k, v in GOOD.items() if k != "price"}
    ListingFeatures.model_validate(features)
    with pytest.raises(ValidationError, match="price"):
        ListingFeatures.model_validate(GOOD)  # unknown field is named, not ignored


@pytest.mark.parametrize("field", ["city", "state", "zip_code", "brokered_by", "status", "bed"])
@pytest.mark.parametrize("value", [[], ["Austin"], {"a": 1}])
def test_lists_and_objects_are_rejected_naming_the_field(field: str, value: Any) -> None:
    reasons = _reasons(**{field: value})
    assert reasons[0][0] == f"{field}:invalid"
    assert "must be text or a number" in reasons[0][1]


def test_control_characters_in_text_are_rejected() -> None:
    assert _reasons(city="Aus\x00tin")[0][0] == "city:invalid"
    assert Listing.model_validate({**GOOD, "city": "New\tYork\n"}, context=AS_OF).city == "New York"


@pytest.mark.parametrize(
    "written",
    ["2019-06-14", "6/14/2019", "06/14/2019", "2019-06-14T00:00:00", "2019-06-14 13:45:00+02:00"],
)
def test_sold_dates_in_the_ways_sources_write_them(written: str) -> None:
    """US listings often write M/D/YYYY; exports write ISO datetimes: the date is the same."""
    listing = Listing.model_validate({**GOOD, "prev_sold_date": written}, context=AS_OF)
    assert listing.prev_sold_date == date(2019, 6, 14)


@pytest.mark.parametrize("written", ["14/6/2019", "6/31/2019", "2019/06/14", "6-14-2019"])
def test_dates_that_are_not_one_of_those_forms_stay_invalid(written: str) -> None:
    ((rule, reason),) = _reasons(prev_sold_date=written)
    assert rule == "prev_sold_date:invalid"
    assert "M/D/YYYY" in reason, "the sentence says which forms are read"


def test_required_fields_are_those_without_a_default() -> None:
    assert REQUIRED_FIELDS == ("status", "price", "city", "state", "zip_code")
    assert OPTIONAL_FIELDS == (
        "brokered_by",
        "bed",
        "bath",
        "acre_lot",
        "street",
        "house_size",
        "prev_sold_date",
    )
    for name in OPTIONAL_FIELDS:  # each may be left out of a valid listing
        Listing.model_validate({k: v for k, v in GOOD.items() if k != name}, context=AS_OF)


def test_field_failures_name_the_field_of_each_rule() -> None:
    with pytest.raises(ValidationError) as error:
        Listing.model_validate({**GOOD, "bed": "three", "zip_code": "x"}, context=AS_OF)
    failures = field_failures(error.value)
    assert [(f.field, f.rule) for f in failures] == [
        ("bed", "bed:invalid"),
        ("zip_code", "zip_code:invalid"),
    ]
    assert [(f.rule, f.reason) for f in failures] == validation_reasons(error.value)
