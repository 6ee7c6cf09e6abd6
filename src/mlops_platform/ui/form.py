"""The Predict form's fields, built from the listing schema, and its validation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from pydantic import ValidationError

from mlops_platform.schema import STATES, STATUSES, ListingFeatures
from mlops_platform.serving.state import EXAMPLE_RECORD


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    kind: str  # select, text, int, float, date
    help: str
    options: tuple[str, ...] = ()
    required: bool = False
    format: str | None = None  # number_input display format


FIELDS: tuple[Field, ...] = (
    Field("status", "Status", "select", "Listing status.", STATUSES, required=True),
    Field("state", "State", "select", "US state or territory.", STATES, required=True),
    Field("city", "City", "text", "City name.", required=True),
    Field("zip_code", "ZIP code", "text", "Five digits.", required=True),
    Field("bed", "Bedrooms", "int", "Whole number, 0-20; empty if unknown."),
    Field("bath", "Bathrooms", "int", "Whole number, 0-20; empty if unknown."),
    Field(
        "house_size", "House size (sq ft)", "float", "Living area; empty if unknown.", format="%.0f"
    ),
    Field("acre_lot", "Lot (acres)", "float", "Land area; empty if unknown.", format="%.2f"),
    Field("prev_sold_date", "Previously sold on", "date", "Empty if never sold."),
    Field("street", "Street id", "text", "Encoded street id (optional)."),
    Field("brokered_by", "Broker id", "text", "Encoded broker id (optional)."),
)


def defaults() -> dict[str, Any]:
    """A typical listing (the API's own example), so the form predicts as it opens."""
    values = dict(EXAMPLE_RECORD)
    if values.get("prev_sold_date"):
        values["prev_sold_date"] = date.fromisoformat(values["prev_sold_date"])
    return values


def to_record(values: dict[str, Any]) -> dict[str, Any]:
    """Form values to the API's JSON record: blanks become nulls, dates ISO text."""
    record = {}
    for field in FIELDS:
        value = values.get(field.name)
        if isinstance(value, str):
            value = value.strip() or None
        if isinstance(value, date):
            value = value.isoformat()
        record[field.name] = value
    return record


def validate(record: dict[str, Any]) -> dict[str, str]:
    """Field name -> message, from the same schema the API and the cleaning use."""
    try:
        ListingFeatures.model_validate(record)
    except ValidationError as error:
        messages: dict[str, str] = {}
        for item in error.errors(include_url=False):
            name = str(item["loc"][0]) if item["loc"] else "listing"
            messages.setdefault(name, item["msg"].removeprefix("Value error, "))
        return messages
    return {}
