"""The listing rules of :mod:`mlops_platform.schema`, applied to whole columns at once.

Cleaning a batch record by record costs a pydantic validation per row (~19 µs). Listings repeat
themselves column by column — the same cities, states, zips, statuses, brokers, sale dates and
round prices — so this module validates each *distinct* value of a column once and maps the
outcome back to the rows. Nothing here restates a rule: every value is judged by the field's own
pydantic validator, built from the :class:`~mlops_platform.schema.Listing` model's core schema
(its normaliser, type, constraints and field validators, with the same ``as_of`` context), and
every failure is turned into a rule code and sentence by :func:`schema.field_failures`.

Two column shapes have too many distinct values for that (a price or a street id is nearly unique
per row), so they have a vectorised fast path (pyarrow) that only ever *accepts*:

- numbers (fields of float or int type whose normaliser is ``_number`` or ``_rooms``): a plain
  decimal text (``-?digits[.digits][e±dd]``) is ``float(text)``; it is accepted when it meets the
  field's bounds (read from the core schema: ``gt``/``ge``/``lt``/``le``) and, for int fields, is
  whole;
- identifiers (``_identifier``): text of ASCII digits, optionally ending in ``.0…``, is those
  digits, accepted within the field's ``max_length``;
- dates (``_sold_date``, a field of date type): a plain ISO date (``YYYY-MM-DD``, ASCII digits)
  that is a real day is that day — what ``date.fromisoformat`` gives for it, computed for the
  whole column by numpy; the field's with-info validators (``_not_in_future`` and its ``as_of``
  context) are then called, as pydantic calls them, on each distinct day the parse accepted, and
  a day one of them refuses goes to the field's validator like any other value.

Every value a fast path does not accept goes through the field's validator, which says what is
wrong with it. A field whose schema holds anything the fast path does not know (another
validator, another constraint) gets no fast path: slower, never different. And on every call a
sample of the values each fast path accepted is validated again by the field's validator; any
difference raises :class:`SchemaDrift` instead of writing a value the schema would not give.
``tests/unit/test_schema_columns.py`` proves both paths agree on generated dirty records.

:func:`check_records` is the same judgement for a small batch of records as a JSON request holds
them (the inference API's list body): plain lists instead of pyarrow, verdicts remembered
between calls.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError
from pydantic_core import SchemaValidator

from mlops_platform import schema
from mlops_platform.schema import FIELDS, REQUIRED_FIELDS, FieldFailure, Listing, field_failures

__all__ = [
    "CheckedColumn",
    "CheckedColumns",
    "RecordColumns",
    "SchemaDrift",
    "check_columns",
    "check_records",
    "fast_paths",
]

# A plain decimal: what JSON and CSV exports write for a number. Digits are bounded so that every
# match is a finite double (at most ~1e119 or 1e-119), which float() and pyarrow parse alike.
_PLAIN_NUMBER = r"^-?[0-9]{1,20}(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,2})?$"
_IDENTIFIER = r"^[0-9]+(\.0+)?$"  # digits, or _identifier's "103378.0" → "103378"
_ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"  # _sold_date's plain case: date.fromisoformat(text)
_SAMPLE = 8  # accepted values per fast path re-validated by the field's validator on each call

_BOUND_VALIDATORS = {  # pydantic's constraint validators on function-after steps: keyword → op
    "greater_than_validator": "gt",
    "greater_than_or_equal_validator": "ge",
    "less_than_validator": "lt",
    "less_than_or_equal_validator": "le",
    "max_length_validator": "max_length",
}
_BOUND_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "gt": pc.greater,
    "ge": pc.greater_equal,
    "lt": pc.less,
    "le": pc.less_equal,
}


class SchemaDrift(RuntimeError):
    """A fast path accepted a value differently from the field's validator: a bug to fix here."""


@dataclass(frozen=True)
class _Shape:
    """What the fast paths need to know of a field, read from its core schema."""

    normalise: Callable[[Any], Any] | None = None
    type: str | None = None
    constraints: tuple[tuple[str, Any], ...] = ()
    understood: bool = True  # False: something no fast path knows about is in the schema
    # Field validators with info (``@field_validator`` in schema.py), outermost first: pydantic
    # calls them on the typed value after everything above, so the innermost runs first.
    after: tuple[Callable[[Any, Any], Any], ...] = ()


def _shape(node: dict[str, Any], found: dict[str, Any]) -> None:
    kind = node["type"]
    if kind in ("default", "nullable"):
        _shape(node["schema"], found)
    elif kind == "function-before" and node["function"]["type"] == "no-info":
        normalise = getattr(node["function"]["function"], "normalise", None)
        if normalise is None or "normalise" in found:
            found["understood"] = False
        found["normalise"] = normalise
        _shape(node["schema"], found)
    elif kind == "function-after" and node["function"]["type"] == "no-info":
        function = node["function"]["function"]
        name = getattr(getattr(function, "func", None), "__name__", "")
        keywords = getattr(function, "keywords", {})
        op = _BOUND_VALIDATORS.get(name)
        if isinstance(function, functools.partial) and op and set(keywords) == {op}:
            found["constraints"].append((op, keywords[op]))
        else:
            found["understood"] = False
        _shape(node["schema"], found)
    elif kind == "function-after" and node["function"]["type"] == "with-info":
        found["after"].append(node["function"]["function"])
        _shape(node["schema"], found)
    elif kind in ("float", "int", "str", "date"):
        found["type"] = kind
        for key, value in node.items():
            if key in ("gt", "ge", "lt", "le", "max_length"):
                found["constraints"].append((key, value))
            elif key not in ("type", "metadata"):
                found["understood"] = False
    else:
        found["understood"] = False


def _read_shape(node: dict[str, Any]) -> _Shape:
    found: dict[str, Any] = {"constraints": [], "understood": True, "after": []}
    _shape(node, found)
    return _Shape(
        found.get("normalise"),
        found.get("type"),
        tuple(found["constraints"]),
        found["understood"],
        tuple(found["after"]),
    )


@dataclass(frozen=True)
class _Rule:
    """One field of the Listing model: its validator, and the fast path its schema allows."""

    name: str
    required: bool
    validator: SchemaValidator
    fast: str | None  # "number", "identifier", "date" or None
    shape: _Shape

    def exact(self, value: Any, context: dict[str, Any]) -> tuple[Any, tuple[FieldFailure, ...]]:
        """The field's verdict on one value: (normalised value, ()) or (None, failures)."""
        try:
            validated = self.validator.validate_python({self.name: value}, context=context)
        except ValidationError as error:
            return None, tuple(field_failures(error))
        return validated[self.name], ()


def _rules() -> dict[str, _Rule]:
    model = Listing.__pydantic_core_schema__
    fields = model["schema"]
    if (
        model["type"] != "model"
        or fields["type"] != "model-fields"
        or fields.get("computed_fields")
    ):
        # A model-level validator (a rule across fields) would wrap model-fields: a column-wise
        # path cannot apply it per field, so it must be taught here before it can be trusted.
        raise SchemaDrift("Listing has rules beyond its fields; teach schema_columns about them")
    config = model.get("config", {})
    rules = {}
    for name in FIELDS:
        node = fields["fields"][name]["schema"]
        optional = node["type"] == "default"
        # The field alone, as a one-key typed dict: errors are located at the field's name,
        # so field_failures words them exactly as for the whole model. The value is always
        # given, so an optional field's default wrapper is not needed.
        inner = node["schema"] if optional else node
        validator = SchemaValidator(
            {
                "type": "typed-dict",
                "fields": {name: {"type": "typed-dict-field", "schema": inner, "required": True}},
            },
            config,
        )
        shape = _read_shape(node)
        ops = {op for op, _ in shape.constraints}
        fast = None
        if not shape.understood:
            pass  # something no fast path knows: every value goes through the validator
        elif shape.after and shape.type != "date":
            pass  # with-info validators are only taught to the date fast path
        elif shape.normalise in (schema._number, schema._rooms) and shape.type in ("float", "int"):
            fast = "number" if ops <= _BOUND_OPS.keys() else None
        elif shape.normalise is schema._identifier and shape.type == "str":
            fast = "identifier" if ops <= {"max_length"} else None
        elif shape.normalise is schema._sold_date and shape.type == "date":
            fast = "date" if not ops else None
        rules[name] = _Rule(name, not optional, validator, fast, shape)
    if {name for name, rule in rules.items() if rule.required} != set(REQUIRED_FIELDS):
        raise SchemaDrift("required fields read from the core schema differ from REQUIRED_FIELDS")
    return rules


_RULES = _rules()


def fast_paths() -> dict[str, str]:
    """Which fields have a vectorised fast path, and which one (for tests and the docs)."""
    return {name: rule.fast for name, rule in _RULES.items() if rule.fast}


@dataclass(frozen=True)
class CheckedColumn:
    """One field of a checked batch: per row a slot, per slot a verdict.

    ``values[slot]`` is the normalised value (None when the value is missing or failed);
    ``failures[slot]`` is empty when the value is valid.
    """

    name: str
    required: bool
    ids: np.ndarray  # row → slot
    values: list[Any]
    failures: list[tuple[FieldFailure, ...]]

    @functools.cached_property
    def failed_slots(self) -> np.ndarray:
        failed = np.fromiter(map(bool, self.failures), dtype=bool, count=len(self.failures))
        return np.flatnonzero(failed)

    def failed_rows(self) -> np.ndarray:
        """A boolean mask over rows: True where this field failed."""
        bad = np.zeros(len(self.values), dtype=bool)
        bad[self.failed_slots] = True
        return bad[self.ids]

    def row_values(self) -> list[Any]:
        """The normalised value of every row."""
        return list(map(self.values.__getitem__, self.ids.tolist()))


@dataclass(frozen=True)
class CheckedColumns:
    """A batch checked column by column: what ``Listing.model_validate`` says of each row."""

    rows: int
    columns: dict[str, CheckedColumn]

    def failed_rows(self, names: Sequence[str] = FIELDS) -> np.ndarray:
        """Rows where any of ``names`` failed (a boolean mask)."""
        mask = np.zeros(self.rows, dtype=bool)
        for name in names:
            if len(self.columns[name].failed_slots):
                mask |= self.columns[name].failed_rows()
        return mask

    def failures(self, row: int) -> list[FieldFailure]:
        """The row's failed rules in field order, as :func:`schema.field_failures` gives them."""
        return [
            failure
            for name in FIELDS
            for failure in self.columns[name].failures[self.columns[name].ids[row]]
        ]

    def values(self, row: int) -> dict[str, Any]:
        """The row's normalised values (a failed field is None), in field order."""
        return {name: column.values[column.ids[row]] for name, column in self.columns.items()}


def check_columns(
    columns: Mapping[str, Sequence[Any] | pa.Array | pa.ChunkedArray],
    *,
    as_of: date | None = None,
    memo: dict[Any, dict[Any, Any]] | None = None,
) -> CheckedColumns:
    """Check a batch given as one column per field (every field of ``schema.FIELDS``).

    A column is a pyarrow string array or a sequence of values. Text-or-null columns (as RAW
    holds them) take the vectorised route; a column holding other values (numbers, booleans,
    lists, as a JSON request may) is checked one distinct value at a time. ``as_of`` is the day
    a sale date may not be after (today when None), as in ``Listing``'s validation context.
    ``memo`` keeps the validators' verdicts on texts between calls (the chunks of one batch), so
    a value seen in an earlier chunk is not validated again.
    """
    missing = [name for name in FIELDS if name not in columns]
    if missing:
        raise ValueError(f"check_columns needs every field; missing: {', '.join(missing)}")
    lengths = {len(columns[name]) for name in FIELDS}
    if len(lengths) != 1:
        raise ValueError(f"columns differ in length: {sorted(lengths)}")
    context = {"as_of": as_of}
    memo = {} if memo is None else memo
    checked = {
        name: _check(_RULES[name], columns[name], context, memo.setdefault((name, as_of), {}))
        for name in FIELDS
    }
    return CheckedColumns(lengths.pop(), checked)


def _as_text_array(values: Any) -> pa.Array | None:
    """The column as one pyarrow string array, or None when it holds anything but text/None."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            return values
        return None
    if not all(v is None or type(v) is str for v in values):
        return None
    return pa.array(values, type=pa.string())


def _check(
    rule: _Rule, values: Any, context: dict[str, Any], memo: dict[Any, Any]
) -> CheckedColumn:
    text = _as_text_array(values)
    if text is None:
        ids, distinct = _distinct_values(values)
        verdicts = [rule.exact(value, context) for value in distinct]
        return CheckedColumn(
            rule.name,
            rule.required,
            ids,
            [value for value, _ in verdicts],
            [failures for _, failures in verdicts],
        )
    encoded = pc.dictionary_encode(text, null_encoding="encode")
    ids = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    dictionary = encoded.dictionary
    accepted, fast_values = _fast(rule, dictionary)
    slot_failures: list[tuple[FieldFailure, ...]] = [()] * len(dictionary)
    if accepted is not None:
        if rule.shape.after:
            _after(rule, accepted, fast_values, context)
        # The fast path's values stand where it accepted; every other slot is overwritten below.
        slot_values: list[Any] = fast_values
        rest = np.flatnonzero(~accepted)
        texts = dictionary.take(pa.array(rest)).to_pylist()
        _sample_check(rule, dictionary, fast_values, np.flatnonzero(accepted), context)
    else:
        slot_values = [None] * len(dictionary)
        rest = np.arange(len(dictionary))
        texts = dictionary.to_pylist()
    for slot, text in zip(rest.tolist(), texts, strict=True):
        verdict = memo.get(text)
        if verdict is None:
            verdict = memo[text] = rule.exact(text, context)
        slot_values[slot], slot_failures[slot] = verdict
    return CheckedColumn(rule.name, rule.required, ids, slot_values, slot_failures)


def _fast(rule: _Rule, dictionary: pa.Array) -> tuple[np.ndarray | None, list[Any]]:
    """The fast path's verdict on a column's distinct texts: (accepted mask, values).

    Context-free: the field's with-info validators are applied after, by :func:`_after`. A
    value where the mask is False is meaningless (the slot goes to the field's validator)."""
    if rule.fast == "number":
        plain = pc.fill_null(pc.match_substring_regex(dictionary, _PLAIN_NUMBER), False)
        numbers = pc.cast(pc.if_else(plain, dictionary, pa.scalar(None, pa.string())), pa.float64())
        ok = plain
        for op, bound in rule.shape.constraints:
            ok = pc.and_(ok, pc.fill_null(_BOUND_OPS[op](numbers, float(bound)), False))
        if rule.shape.type == "int":
            ok = pc.and_(ok, pc.fill_null(pc.equal(numbers, pc.floor(numbers)), False))
            values = [None if v is None else int(v) for v in numbers.to_pylist()]
        else:
            values = numbers.to_pylist()
        return ok.to_numpy(zero_copy_only=False), values
    if rule.fast == "identifier":
        ok = pc.fill_null(pc.match_substring_regex(dictionary, _IDENTIFIER), False)
        # Of a text of that shape, "digits.000" loses its zeros, then its point: the digits.
        # (On any other text the result is meaningless: it is not accepted.)
        ids = pc.if_else(
            pc.match_substring(dictionary, "."),
            pc.ascii_rtrim(pc.ascii_rtrim(dictionary, "0"), "."),
            dictionary,
        )
        for _, bound in rule.shape.constraints:  # max_length only
            ok = pc.and_(ok, pc.fill_null(pc.less_equal(pc.utf8_length(ids), bound), False))
        return ok.to_numpy(zero_copy_only=False), ids.to_pylist()
    if rule.fast == "date":
        return _iso_dates(dictionary)
    return None, []


_ORD_ZERO = ord("0")


def _iso_dates(dictionary: pa.Array) -> tuple[np.ndarray, list[Any]]:
    """Plain ISO dates (``YYYY-MM-DD``, ASCII digits) that are real days, as ``date``: what
    ``date.fromisoformat`` gives for such a text (years 0001-9999, months 1-12, the month's days;
    anything else is not accepted). Parsed for the whole column at once by numpy."""
    shaped = pc.fill_null(pc.match_substring_regex(dictionary, _ISO_DATE), False)
    ok = shaped.to_numpy(zero_copy_only=False).copy()
    slots = np.flatnonzero(ok)
    if not len(slots):
        return ok, [None] * len(dictionary)
    texts = dictionary.take(pa.array(slots))  # each exactly 10 ASCII bytes
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int32)[texts.offset :][: len(slots)]
    data = np.frombuffer(texts.buffers()[2], dtype=np.uint8)
    digits = data[offsets[:, None] + np.arange(10)].astype(np.int64) - _ORD_ZERO
    year = digits[:, 0] * 1000 + digits[:, 1] * 100 + digits[:, 2] * 10 + digits[:, 3]
    month = digits[:, 5] * 10 + digits[:, 6]
    day = digits[:, 8] * 10 + digits[:, 9]
    real_month = (month >= 1) & (month <= 12)
    months = ((year - 1970) * 12 + np.where(real_month, month, 1) - 1).astype("datetime64[M]")
    first = months.astype("datetime64[D]")
    length = ((months + 1).astype("datetime64[D]") - first).astype(np.int64)
    real = (year >= 1) & real_month & (day >= 1) & (day <= length)
    days = first[real] + (day[real] - 1).astype("timedelta64[D]")
    values = np.full(len(dictionary), None, dtype=object)
    values[slots[real]] = days.astype(object)  # datetime.date, as fromisoformat gives
    ok[slots[~real]] = False
    return ok, values.tolist()


@dataclass(frozen=True)
class _Info:
    """What pydantic hands a with-info field validator when the field is validated alone (as
    :meth:`_Rule.exact` does): the validation context, the field's name, no other field's data."""

    context: Any
    field_name: str
    data: Mapping[str, Any]
    mode: str = "python"
    config: Any = None


def _after(rule: _Rule, accepted: np.ndarray, values: list[Any], context: dict[str, Any]) -> None:
    """The field's with-info validators (schema.py's own functions, with the same context) on
    each value the fast path accepted, innermost first, as pydantic runs them; a value one of
    them refuses (or any error) is left to the field's validator, which words the failure."""
    info = _Info(context, rule.name, {})
    steps = rule.shape.after[::-1]
    for slot in np.flatnonzero(accepted).tolist():
        value = values[slot]
        try:
            for step in steps:
                value = step(value, info)
        except Exception:  # the validator decides, and says what is wrong
            accepted[slot] = False
            continue
        values[slot] = value


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


def _sample_check(
    rule: _Rule,
    dictionary: pa.Array,
    fast_values: list[Any],
    accepted: np.ndarray,
    context: dict[str, Any],
) -> None:
    """Re-validate a few accepted values with the field's validator; raise on any difference."""
    if not len(accepted):
        return
    picks = accepted[np.linspace(0, len(accepted) - 1, min(_SAMPLE, len(accepted))).astype(int)]
    for slot in picks.tolist():
        text = dictionary[slot].as_py()
        value, failures = rule.exact(text, context)
        if failures or not _same(value, fast_values[slot]):
            raise SchemaDrift(
                f"{rule.name}: the {rule.fast} fast path read {text!r} as "
                f"{fast_values[slot]!r}, the schema as {value!r} {list(failures)}; "
                "fix schema_columns to match schema.py"
            )


@dataclass(frozen=True)
class RecordColumns:
    """Records checked column by column: per field, the normalised value of every record.

    ``failed`` names the fields where some record's value failed; their columns hold None there.
    """

    columns: dict[str, list[Any]]
    failed: tuple[str, ...]


def check_records(
    records: Sequence[Mapping[str, Any]],
    names: Sequence[str] = FIELDS,
    *,
    as_of: date | None = None,
    memo: dict[Any, dict[Any, Any]] | None = None,
) -> RecordColumns:
    """Check ``names`` of a small batch of records (a JSON request body), one column at a time.

    For a request of ~100 records the per-call cost of pyarrow is more than the work, so this
    reads plain lists: each *distinct* value of a column is judged once by the field's validator
    (as in :func:`check_columns`, same verdicts), and ``memo`` keeps the verdicts between calls,
    so the cities, states, zips and dates a service sees again cost one dict lookup. A key absent
    from a record reads as None. The memo has :func:`check_columns`' layout (texts are their own
    keys); bounding it is the caller's business.
    """
    context = {"as_of": as_of}
    memo = {} if memo is None else memo
    get = dict.get if all(type(record) is dict for record in records) else Mapping.get
    columns: dict[str, list[Any]] = {}
    failed = []
    for name in names:
        raw = list(map(get, records, repeat(name)))
        types = set(map(type, raw))
        if types <= _TEXT_TYPES or types <= _INT_TYPES:  # their own keys, texts as check_columns
            keys: list[Any] = raw
        else:  # type and repr tell apart what the normalisers do (1, 1.0, True; 0.0, -0.0)
            keys = list(zip(map(type, raw), map(repr, raw), strict=True))
        verdicts = memo.setdefault((name, as_of), {})
        try:  # the common case: every value judged before
            found = list(map(verdicts.__getitem__, keys))
        except KeyError:  # each distinct value not judged yet, once
            distinct = dict(zip(keys, raw, strict=True))
            for key in distinct.keys() - verdicts.keys():
                verdicts[key] = _RULES[name].exact(distinct[key], context)
            found = list(map(verdicts.__getitem__, keys))
        columns[name] = list(map(itemgetter(0), found))
        if any(map(itemgetter(1), found)):
            failed.append(name)
    return RecordColumns(columns, tuple(failed))


_TEXT_TYPES = frozenset({str, type(None)})
# Exactly int (bool is another type): an int never equals a text or a (type, repr) key.
_INT_TYPES = frozenset({int, type(None)})


def _key(value: Any) -> Any:
    """A dict key that tells apart what the normalisers tell apart (1, 1.0, True; 0.0, -0.0)."""
    if value is None or type(value) is str:
        return value
    if type(value) is float:
        return (float, repr(value))
    try:
        hash(value)
    except TypeError:
        return object()  # lists, dicts: each is its own value
    return (type(value), value)


def _distinct_values(values: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    slots: dict[Any, int] = {}
    distinct: list[Any] = []
    ids = np.empty(len(values), dtype=np.int64)
    for row, value in enumerate(values):
        key = _key(value)
        slot = slots.get(key)
        if slot is None:
            slot = slots[key] = len(distinct)
            distinct.append(value)
        ids[row] = slot
    return ids, distinct
