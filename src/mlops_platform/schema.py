"""The listing record: its 12 fields, their clean types and the rules a clean row obeys.

This is the one definition of a listing. Cleaning validates raw rows with :class:`Listing` (a
whole batch column by column through :mod:`mlops_platform.schema_columns`, which builds each
field's validator from this model), the inference API takes :class:`ListingFeatures` as its
request body, and the UI builds its form from the same fields, so a rule changed here changes
everywhere.

Raw sources are messy (numbers as strings, ``NaN``, ``"601.0"`` for zip 00601, ``"CA"`` for
California); the normalisers below accept all of that and turn it into one canonical value, or
raise an error that says which rule failed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

# Column order of the USA real-estate listings dataset, which the data-source API follows.
FIELDS: tuple[str, ...] = (
    "brokered_by",
    "status",
    "price",
    "bed",
    "bath",
    "acre_lot",
    "street",
    "city",
    "state",
    "zip_code",
    "house_size",
    "prev_sold_date",
)
TARGET = "price"
FEATURES: tuple[str, ...] = tuple(f for f in FIELDS if f != TARGET)
NUMERIC_FEATURES: tuple[str, ...] = ("bed", "bath", "acre_lot", "house_size")
CATEGORICAL_FEATURES: tuple[str, ...] = (
    "brokered_by",
    "status",
    "street",
    "city",
    "state",
    "zip_code",
)

STATUSES: tuple[str, ...] = ("for_sale", "ready_to_build", "sold")

# Plausibility bounds. A value outside is a data error (a typo, a unit mix-up), not a rare house.
MAX_PRICE = 1_000_000_000.0
MAX_ROOMS = 20
MAX_ACRES = 100_000.0
MAX_HOUSE_SIZE = 100_000.0  # square feet
MIN_SOLD_DATE = date(1900, 1, 1)

STATE_CODES: dict[str, str] = {
    "AL": "Alabama",
    "AK": "Alaska",
    "AZ": "Arizona",
    "AR": "Arkansas",
    "CA": "California",
    "CO": "Colorado",
    "CT": "Connecticut",
    "DE": "Delaware",
    "DC": "District of Columbia",
    "FL": "Florida",
    "GA": "Georgia",
    "HI": "Hawaii",
    "ID": "Idaho",
    "IL": "Illinois",
    "IN": "Indiana",
    "IA": "Iowa",
    "KS": "Kansas",
    "KY": "Kentucky",
    "LA": "Louisiana",
    "ME": "Maine",
    "MD": "Maryland",
    "MA": "Massachusetts",
    "MI": "Michigan",
    "MN": "Minnesota",
    "MS": "Mississippi",
    "MO": "Missouri",
    "MT": "Montana",
    "NE": "Nebraska",
    "NV": "Nevada",
    "NH": "New Hampshire",
    "NJ": "New Jersey",
    "NM": "New Mexico",
    "NY": "New York",
    "NC": "North Carolina",
    "ND": "North Dakota",
    "OH": "Ohio",
    "OK": "Oklahoma",
    "OR": "Oregon",
    "PA": "Pennsylvania",
    "RI": "Rhode Island",
    "SC": "South Carolina",
    "SD": "South Dakota",
    "TN": "Tennessee",
    "TX": "Texas",
    "UT": "Utah",
    "VT": "Vermont",
    "VA": "Virginia",
    "WA": "Washington",
    "WV": "West Virginia",
    "WI": "Wisconsin",
    "WY": "Wyoming",
    "PR": "Puerto Rico",
    "VI": "Virgin Islands",
    "GU": "Guam",
}
STATES: tuple[str, ...] = tuple(sorted(STATE_CODES.values()))
_STATE_LOOKUP: dict[str, str] = {
    **{code.lower(): name for code, name in STATE_CODES.items()},
    **{name.lower(): name for name in STATE_CODES.values()},
}

_MISSING_TEXT = frozenset({"", "nan", "null", "none", "na", "n/a"})
_ZIP_RE = re.compile(r"^(\d{1,5})(?:\.0+)?(?:-\d{4})?$")
_INTEGRAL_ID_RE = re.compile(r"^(\d+)\.0+$")
_US_DATE_RE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


class MissingValue(ValueError):
    """A required field is absent, null, blank or NaN."""


def is_missing(value: Any) -> bool:
    """True for the many ways a source says "no value": null, NaN, blank, "NaN", "null"..."""
    if value is None:
        return True
    if isinstance(value, str):
        if len(value) < 8:
            return value.strip().lower() in _MISSING_TEXT
        return value.isspace()
    if isinstance(value, float):
        return math.isnan(value)
    return False


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip().replace(",", ""))
        except ValueError:
            raise ValueError("not a number") from None
    else:
        raise ValueError(f"must be a number, got {type(value).__name__}")
    if math.isinf(number):
        raise ValueError("must be finite")
    return number


def _text(value: Any) -> str:
    """Trimmed, with inner runs of whitespace collapsed to one space."""
    if isinstance(value, str):
        text = value.strip()
        if "  " in text or not text.isprintable():
            text = " ".join(text.split())
            if not text.isprintable():
                raise ValueError("contains control characters")
        return text
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"must be text, got {type(value).__name__}")
    return str(value)


# The text normalisers are cached: listings repeat the same ids, cities, states, zips, statuses.
@lru_cache(maxsize=65536, typed=True)
def _identifier(value: Any) -> str:
    """Broker and street ids arrive as ``103378.0``; the id is ``103378``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = _text(value)
    match = _INTEGRAL_ID_RE.match(text)
    return match.group(1) if match else text


@lru_cache(maxsize=65536, typed=True)
def _city(value: Any) -> str:
    return _text(value).title()


@lru_cache(maxsize=65536, typed=True)
def _state(value: Any) -> str:
    text = _text(value)
    try:
        return _STATE_LOOKUP[text.lower()]
    except KeyError:
        raise ValueError("unknown US state or territory") from None


@lru_cache(maxsize=65536, typed=True)
def _status(value: Any) -> str:
    text = _text(value).lower().replace("-", "_").replace(" ", "_")
    if text not in STATUSES:
        raise ValueError(f"must be one of {', '.join(STATUSES)}")
    return text


@lru_cache(maxsize=65536, typed=True)
def _zip_code(value: Any) -> str:
    """Zip codes lose their leading zeros in numeric columns (``601.0``); restore them."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = _text(value)
    match = _ZIP_RE.match(text)
    if not match or int(match.group(1)) == 0:
        raise ValueError("not a 5-digit US zip code")
    return match.group(1).zfill(5)


def _sold_date(value: Any) -> date:
    """``YYYY-MM-DD``, an ISO datetime (its date), or ``M/D/YYYY`` as US listings often write it."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = _text(value)
    us = _US_DATE_RE.match(text)
    try:
        if us:
            month, day, year = (int(part) for part in us.groups())
            return date(year, month, day)
        return date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError("not a date (YYYY-MM-DD, M/D/YYYY or an ISO datetime)") from None


def _rooms(value: Any) -> float:
    number = _number(value)
    if not number.is_integer():
        raise ValueError(f"must be a whole number, got {number}")
    return number


_SCALARS = (str, int, float, date)


def _scalar(value: Any) -> Any:
    """Lists and objects are never a field's value (and cannot key the normalisers' caches)."""
    if not isinstance(value, _SCALARS):
        raise ValueError(f"must be text or a number, got {type(value).__name__}")
    return value


def _optional(normalise: Callable[[Any], Any]) -> BeforeValidator:
    def check(value: Any) -> Any:
        return None if is_missing(value) else normalise(_scalar(value))

    check.normalise = normalise  # type: ignore[attr-defined]  # read by schema_columns
    return BeforeValidator(check)


def _required(normalise: Callable[[Any], Any]) -> BeforeValidator:
    def check(value: Any) -> Any:
        if is_missing(value):
            raise MissingValue("is required but missing")
        return normalise(_scalar(value))

    check.normalise = normalise  # type: ignore[attr-defined]  # read by schema_columns
    return BeforeValidator(check)


Status = Annotated[
    Literal["for_sale", "ready_to_build", "sold"],
    _required(_status),
    Field(description="Listing status.", examples=["for_sale"]),
]
Price = Annotated[
    float,
    _required(_number),
    Field(gt=0, le=MAX_PRICE, description="Price in US dollars (the target).", examples=[325000]),
]
Rooms = Annotated[
    Annotated[int, Field(ge=0, le=MAX_ROOMS)] | None,
    _optional(_rooms),
    Field(description="Count of bedrooms or bathrooms.", examples=[3]),
]
Acres = Annotated[
    Annotated[float, Field(ge=0, le=MAX_ACRES)] | None,
    _optional(_number),
    Field(description="Lot size in acres.", examples=[0.25]),
]
HouseSize = Annotated[
    Annotated[float, Field(gt=0, le=MAX_HOUSE_SIZE)] | None,
    _optional(_number),
    Field(description="Living area in square feet.", examples=[1850]),
]
Identifier = Annotated[
    Annotated[str, Field(max_length=64)] | None,
    _optional(_identifier),
    Field(description="Opaque id (broker, street).", examples=["103378"]),
]
City = Annotated[str, _required(_city), Field(max_length=80, examples=["San Juan"])]
State = Annotated[
    str,
    _required(_state),
    Field(description="US state or territory, full name or 2-letter code.", examples=["Texas"]),
]
ZipCode = Annotated[str, _required(_zip_code), Field(pattern=r"^\d{5}$", examples=["78701"])]
SoldDate = Annotated[
    date | None,
    _optional(_sold_date),
    Field(description="Previous sale date; never in the future.", examples=["2019-06-14"]),
]


class ListingFeatures(BaseModel):
    """What a caller knows about a house before it has a price: the model's input."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    brokered_by: Identifier = None
    status: Status
    bed: Rooms = None
    bath: Rooms = None
    acre_lot: Acres = None
    street: Identifier = None
    city: City
    state: State
    zip_code: ZipCode
    house_size: HouseSize = None
    prev_sold_date: SoldDate = None

    @field_validator("prev_sold_date")
    @classmethod
    def _not_in_future(cls, value: date | None, info: ValidationInfo) -> date | None:
        as_of = (info.context or {}).get("as_of") or date.today()
        if value is not None and value > as_of:
            raise ValueError(f"is in the future ({value} > {as_of})")
        if value is not None and value < MIN_SOLD_DATE:
            raise ValueError(f"is before {MIN_SOLD_DATE}")
        return value


class Listing(ListingFeatures):
    """A clean listing: the features plus the price it sold or is listed for."""

    price: Price


# Which fields a listing cannot do without, read from the model itself (a field with no default is
# required): cleaning rejects a row whose required field fails, and repairs (nulls) an optional
# one, so a row is never lost for a value the listing may lack anyway.
REQUIRED_FIELDS: tuple[str, ...] = tuple(
    name for name in FIELDS if Listing.model_fields[name].is_required()
)
OPTIONAL_FIELDS: tuple[str, ...] = tuple(name for name in FIELDS if name not in REQUIRED_FIELDS)


@dataclass(frozen=True)
class FieldFailure:
    """One failed rule: the field it concerns (``record`` for the row as a whole), its stable
    ``field:kind`` code, and the sentence that says what was wrong."""

    field: str
    rule: str
    reason: str


def field_failures(error: Any) -> list[FieldFailure]:
    """Every failed rule of a pydantic ValidationError, in field order (unknown fields last)."""
    out = []
    for item in error.errors(include_url=False):
        field = ".".join(str(p) for p in item["loc"]) or "record"
        kind = item["type"]
        if kind == "value_error":
            cause = item.get("ctx", {}).get("error")
            kind = "missing" if isinstance(cause, MissingValue) else "invalid"
        message = item["msg"].removeprefix("Value error, ")
        reason = f"{field}: {message} (got {item.get('input')!r})"
        out.append(FieldFailure(field, f"{field}:{kind}", reason))
    order = {name: i for i, name in enumerate(FIELDS)}
    out.sort(key=lambda failure: order.get(failure.field, len(order)))
    return out


def validation_reasons(error: Any) -> list[tuple[str, str]]:
    """``(rule, reason)`` per failed rule of a pydantic ValidationError, in field order.

    ``rule`` is a stable code (``field:kind``) for grouping counts; ``reason`` is a sentence.
    """
    return [(failure.rule, failure.reason) for failure in field_failures(error)]


# A valid listing as a client sends it: the API's documented example, its warm-up row when a model
# version has no SHAP background, and what `mlops check fastapi` asks a price for.
EXAMPLE_RECORD: dict[str, Any] = ListingFeatures(
    brokered_by="103378",
    status="for_sale",
    bed=3,
    bath=2,
    acre_lot=0.25,
    street="1698080",
    city="Austin",
    state="Texas",
    zip_code="78701",
    house_size=1850,
    prev_sold_date="2019-06-14",
).model_dump(mode="json")
