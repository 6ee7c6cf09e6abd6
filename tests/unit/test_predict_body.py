"""The /predict body checked column-wise says what FastAPI's per-record validation said.

Hypothesis generates bodies (one record or a list; JSON-typed values, valid and dirty, keys
missing or unknown, things that are not records at all) and checks that ``check_body`` accepts
exactly what ``PredictBody`` (``ListingFeatures`` per record) accepts, with the same normalised
values, and refuses the rest with the same errors. The memo is shared across examples, so later
bodies read verdicts that earlier ones left.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from mlops_platform.schema import EXAMPLE_RECORD, FEATURES
from mlops_platform.serving import body as body_module
from mlops_platform.serving.body import PredictBody, VerdictMemo, check_body
from tests.unit.test_schema_columns import VALID_JSON, _same, json_value

REFERENCE = TypeAdapter(PredictBody)
MEMO = VerdictMemo()

record = st.fixed_dictionaries(
    {
        name: st.integers(0, 30).flatmap(
            lambda clean, name=name: VALID_JSON[name] if clean else json_value
        )
        for name in FEATURES
    }
)
odd_record = st.one_of(  # keys missing or unknown, or not a record
    record.map(lambda r: {k: v for k, v in r.items() if k not in ("bed", "city")}),
    record.map(lambda r: {**r, "price": 1}),
    json_value,
)
bodies = st.one_of(
    record,
    st.lists(record, min_size=1, max_size=6),
    st.lists(record, min_size=1, max_size=3),
    st.lists(st.one_of(record, odd_record), min_size=0, max_size=4),
    odd_record,
)


def _reference(body: Any) -> tuple[list[dict[str, Any]] | None, list[tuple] | None]:
    """(records, None) as FastAPI's validation gave them, or (None, errors)."""
    try:
        validated = REFERENCE.validate_python(body, from_attributes=True)
    except ValidationError as error:
        return None, _plain(
            [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False)]
        )
    models = validated if isinstance(validated, list) else [validated]
    return [model.model_dump() for model in models], None


def _plain(errors: list[dict[str, Any]]) -> list[tuple]:
    return [(e["type"], tuple(e["loc"]), e["msg"], repr(e["input"])) for e in errors]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
@example(EXAMPLE_RECORD)
@example([EXAMPLE_RECORD, {**EXAMPLE_RECORD, "bath": []}])
@example([{**EXAMPLE_RECORD, "acre_lot": 0.0}, {**EXAMPLE_RECORD, "acre_lot": -0.0}])
@example([{**EXAMPLE_RECORD, "bed": v} for v in (1, 1.0, True, "1")])
@example([{**EXAMPLE_RECORD, "bed": 1}, {**EXAMPLE_RECORD, "bed": None}])  # ints: own memo keys
@example({**EXAMPLE_RECORD, "bed": True})  # then the same values as other types, same memo
@example({**EXAMPLE_RECORD, "bed": 1.0})
@example([{**EXAMPLE_RECORD, "bed": 2**70}, {**EXAMPLE_RECORD, "bed": -1}])
def test_check_body_agrees_with_per_record_validation(body: Any) -> None:
    records, errors = _reference(body)
    event("accepted" if records is not None else "refused")
    if records is None:
        with pytest.raises(RequestValidationError) as refused:
            check_body(body, MEMO)
        assert _plain(list(refused.value.errors())) == errors
        return
    checked = check_body(body, MEMO)
    assert checked.size == len(records)
    got = checked.records()
    assert all(_same(g, r) for g, r in zip(got, records, strict=True)), (got, records)


def test_the_memo_is_bounded_per_field_and_forgets_each_day(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    memo = VerdictMemo(per_field=15)
    body = [{**EXAMPLE_RECORD, "street": str(i)} for i in range(10)]
    check_body(body, memo)
    day, verdicts = memo.today()
    assert len(verdicts[("street", day)]) == 10
    check_body([{**EXAMPLE_RECORD, "street": str(i)} for i in range(10, 20)], memo)
    verdicts = memo.today()[1]
    assert len(verdicts[("street", day)]) == 0  # over the bound: that field starts afresh
    assert len(verdicts[("city", day)]) == 1  # the others keep theirs

    class Tomorrow(date):
        @classmethod
        def today(cls) -> date:
            return date.fromordinal(day.toordinal() + 1)

    monkeypatch.setattr(body_module, "date", Tomorrow)
    assert memo.today() == (Tomorrow.today(), {})
