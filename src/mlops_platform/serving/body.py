"""The ``POST /predict`` body: one listing or a list, checked once, column by column.

Validating a 100-record list as ``list[ListingFeatures]`` costs a pydantic model per record, and
``model_dump`` another pass; at ~100 records a request that was most of its time. Here the body
is checked by :func:`~mlops_platform.schema_columns.check_records`, which judges each distinct
value of a field once with that field's own validator (built from ``schema.py``) and remembers
the verdicts between requests. Only a body that fails is validated by pydantic as before, so a
bad request gets exactly the 422 it always got, naming the record index and the field.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from fastapi.exceptions import RequestValidationError
from pydantic import Discriminator, Field, Tag, TypeAdapter, ValidationError

from mlops_platform.schema import FEATURES, ListingFeatures
from mlops_platform.schema_columns import SchemaDrift, check_records
from mlops_platform.serving.compiled import column_records

__all__ = ["CheckedBody", "PredictBody", "VerdictMemo", "check_body"]

_FEATURE_SET = frozenset(FEATURES)


def _shape(body: Any) -> str:
    return "records" if isinstance(body, list) else "record"


PredictBody = Annotated[
    Annotated[ListingFeatures, Tag("record")]
    | Annotated[list[ListingFeatures], Tag("records"), Field(min_length=1)],
    Discriminator(_shape),
]
"""What the OpenAPI document shows, and what words the errors of a body that fails."""

_ADAPTER: TypeAdapter[Any] = TypeAdapter(PredictBody)


@dataclass(frozen=True)
class CheckedBody:
    """A valid body: per field of ``FEATURES``, the normalised value of every record."""

    columns: dict[str, list[Any]]
    size: int

    def records(self) -> list[dict[str, Any]]:
        """One dict per record, as ``ListingFeatures.model_dump()`` gives it."""
        return column_records(self.columns)


class VerdictMemo:
    """The field validators' verdicts kept between requests, bounded per field.

    A field that has collected more than ``per_field`` values starts afresh (clients choose the
    values, and street ids hardly repeat, so without a bound it would grow forever; the other
    fields keep theirs). Everything starts afresh each day: whether a sale date is "in the
    future" depends on it. A full field's table is replaced, never cleared, so a request
    reading it on another thread is not disturbed.
    """

    def __init__(self, per_field: int = 10_000) -> None:
        self.per_field = per_field
        self._day = date.min
        self._verdicts: dict[Any, dict[Any, Any]] = {}
        self._lock = threading.Lock()  # bodies are checked on the event loop and in threads

    def today(self) -> tuple[date, dict[Any, dict[Any, Any]]]:
        day = date.today()
        with self._lock:
            if day != self._day:
                self._day, self._verdicts = day, {}
            for key, verdicts in list(self._verdicts.items()):
                if len(verdicts) > self.per_field:
                    self._verdicts[key] = {}
            return day, self._verdicts


def check_body(body: Any, memo: VerdictMemo) -> CheckedBody:
    """The checked body, or RequestValidationError with the errors FastAPI would have given."""
    records = body if isinstance(body, list) else [body]
    if (
        records
        and all(type(record) is dict for record in records)
        and _FEATURE_SET.issuperset(set().union(*records))
    ):
        as_of, verdicts = memo.today()
        checked = check_records(records, FEATURES, as_of=as_of, memo=verdicts)
        if not checked.failed:
            return CheckedBody(checked.columns, len(records))
    raise RequestValidationError(_errors(body), body=body)


def _errors(body: Any) -> list[dict[str, Any]]:
    """pydantic's errors for the body, located under ``body`` as FastAPI locates them."""
    try:
        _ADAPTER.validate_python(body, from_attributes=True)
    except ValidationError as error:
        return [{**item, "loc": ("body", *item["loc"])} for item in error.errors(include_url=False)]
    raise SchemaDrift(
        "check_records refused a /predict body that ListingFeatures accepts: "
        "fix schema_columns to match schema.py"
    )
