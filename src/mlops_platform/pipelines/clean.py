"""Turn RAW listings into typed, validated CLEAN rows, incrementally and idempotently.

Work is tracked per RAW batch in ``clean_data.cleaned_batches``: a run reads only the listings of
batches not cleaned yet, so its cost follows the new rows, not the size of RAW. Each batch is one
CLEAN transaction (rows, repairs, rejections and the marker together) under an advisory lock, so a
crash leaves nothing partial and two runs at once never clean a batch twice. Every RAW row ends in
exactly one place: ``clean_data.listings`` or ``clean_data.rejected`` with its reason.

A row whose required field fails (price, status, city, state, zip code) is rejected: it is no
listing without it. A row whose only failures are optional fields (an unreadable bed count, an
impossible or future sale date...) is kept with those fields null, and each nulled field is
recorded in ``clean_data.repairs`` with its rule and the text RAW received, so a source that
writes one column oddly costs that column, not its rows.

A batch is cleaned column-wise (:mod:`mlops_platform.schema_columns`: each distinct value of a
column judged once by the schema's own field validator), read from RAW and written to CLEAN with
COPY (binary into CLEAN); :func:`validate_row` is the same verdict for one record.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date
from itertools import compress, repeat
from operator import attrgetter, is_, is_not
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from psycopg.copy import QueuedLibpqWriter
from pydantic import ValidationError
from sqlalchemy import Connection, Date, Double, Engine, SmallInteger, func, select, text

from mlops_platform.schema import (
    FIELDS,
    OPTIONAL_FIELDS,
    REQUIRED_FIELDS,
    FieldFailure,
    Listing,
    field_failures,
)
from mlops_platform.schema_columns import CheckedColumn, CheckedColumns, check_columns
from mlops_platform.settings import Settings
from mlops_platform.storage import binary_copy
from mlops_platform.storage.engine import make_engine
from mlops_platform.storage.tables import batches, clean_listings, cleaned_batches, raw_listings

log = logging.getLogger(__name__)

DUPLICATE_RULE = "duplicate"
_CLEAN_COLUMNS = ("batch_id", "row_number", *FIELDS, "row_key", "split")
_REPAIR_COLUMNS = ("batch_id", "row_number", "field", "rule", "original", "reason")
_REPAIRABLE = frozenset(OPTIONAL_FIELDS)
_FIELD_SET = frozenset(FIELDS)
_REQUIRED_SET = frozenset(REQUIRED_FIELDS)
_LOCK_KEY = 0x6D6C6F7073  # "mlops": one cleaner at a time per CLEAN database
_CHUNK_ROWS = 50_000  # RAW rows read, cleaned and sent to CLEAN at a time
_TEST, _TRAIN = (
    pa.scalar(len(split).to_bytes(4, "big") + split, pa.binary()) for split in (b"test", b"train")
)


@dataclass(frozen=True)
class RawRow:
    """A RAW listing, named by its batch and its position in the batch."""

    batch_id: int
    row_number: int
    values: dict[str, str | None]


@dataclass(frozen=True)
class Repair:
    """An optional field of a kept row that failed its rule and was set to null: what RAW held
    (``original``, as received) and why it could not be used."""

    batch_id: int
    row_number: int
    field: str
    rule: str
    original: str
    reason: str

    def as_tuple(self) -> tuple[Any, ...]:
        return (self.batch_id, self.row_number, self.field, self.rule, self.original, self.reason)


@dataclass(frozen=True)
class CleanRow:
    batch_id: int
    row_number: int
    listing: Listing
    row_key: str
    split: str
    repairs: tuple[Repair, ...] = ()  # recorded only if the row itself is kept

    def as_tuple(self) -> tuple[Any, ...]:
        return (self.batch_id, self.row_number, *_values(self.listing), self.row_key, self.split)


@dataclass(frozen=True)
class Rejection:
    batch_id: int
    row_number: int
    rule: str
    reason: str


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch's write put in CLEAN: rows kept, rows repaired, rules counted."""

    cleaned: int
    rejected_by_rule: Counter[str]
    repaired: int
    repaired_by_rule: Counter[str]


@dataclass
class CleanResult:
    batches: list[int] = field(default_factory=list)
    rows_read: int = 0
    cleaned: int = 0
    rejected: int = 0
    rejected_by_rule: dict[str, int] = field(default_factory=dict)
    repaired: int = 0  # rows kept with one or more optional fields nulled (among ``cleaned``)
    repaired_by_rule: dict[str, int] = field(default_factory=dict)  # one count per nulled field

    def add(self, batch_id: int, rows_read: int, outcome: BatchOutcome) -> None:
        self.batches.append(batch_id)
        self.rows_read += rows_read
        self.cleaned += outcome.cleaned
        self.rejected += sum(outcome.rejected_by_rule.values())
        self.rejected_by_rule = _merged(self.rejected_by_rule, outcome.rejected_by_rule)
        self.repaired += outcome.repaired
        self.repaired_by_rule = _merged(self.repaired_by_rule, outcome.repaired_by_rule)


def _merged(counts: dict[str, int], more: Counter[str]) -> dict[str, int]:
    return dict(sorted((Counter(counts) + more).items()))


_values = attrgetter(*FIELDS)


def _material(value: Any) -> str:
    """A clean value as it enters a row's hash: its text, or NUL for null."""
    return "\x00" if value is None else str(value)


# A row key is the first 128 bits of the SHA-256, as 32 hex digits: stored as a ``uuid``
# (clean_0005), 16 bytes for the unique index to compare; no two listings share one in practice.
ROW_KEY_DIGITS = 32


def row_key(listing: Listing) -> str:
    """Content hash of a clean listing: equal rows (exact duplicates) share it."""
    material = "\x1f".join([_material(v) for v in _values(listing)])
    return hashlib.sha256(material.encode()).hexdigest()[:ROW_KEY_DIGITS]


# A listing's identity: what stays the same when the same house is listed again at another price,
# status, broker or sale date — where it is and what it is. The train/test split goes by it, so a
# re-listed house is never in both (its price in one would leak into the other).
IDENTITY_FIELDS: tuple[str, ...] = (
    "street",
    "city",
    "state",
    "zip_code",
    "bed",
    "bath",
    "acre_lot",
    "house_size",
)
_identity = attrgetter(*IDENTITY_FIELDS)


def listing_identity(listing: Listing) -> str:
    """Hash of the fields that identify the house (IDENTITY_FIELDS), not the listing event."""
    material = "\x1f".join([_material(v) for v in _identity(listing)])
    return hashlib.sha256(material.encode()).hexdigest()


def split_of(key: str, test_fraction: float) -> str:
    """Train or test as a pure function of the house's identity: it never changes between runs."""
    return "test" if int(key[:15], 16) / 16**15 < test_fraction else "train"


# --- one batch, column-wise -----------------------------------------------------------------------


@dataclass(frozen=True)
class CleanBatch:
    """A batch cleaned column-wise: the kept rows (positions in the input, in order, with their
    row keys, splits and repairs) and the rejected ones (in row order)."""

    batch_ids: np.ndarray  # per input row
    row_numbers: np.ndarray  # per input row
    checked: CheckedColumns
    kept: np.ndarray  # positions of the kept rows
    row_keys: list[str]  # per kept row
    repairs: dict[int, tuple[Repair, ...]]  # position → repairs, kept rows only
    rejections: list[Rejection]
    texts: dict[str, pa.Array]  # per field, each slot's value as text (null for null)
    test: np.ndarray  # per kept row: True where it is in the test split (split_of its identity)
    key_digests: np.ndarray  # per kept row: its row key's 16 bytes (the uuid CLEAN stores)

    def in_test(self, rows: np.ndarray) -> np.ndarray:
        """Whether the kept rows ``rows`` (indices into ``kept``) are in the test split."""
        return self.test[rows]

    @property
    def splits(self) -> list[str]:
        return ["test" if test else "train" for test in self.test.tolist()]

    def listing(self, position: int) -> Listing:
        """The clean listing of a kept row (built, not validated again: it was validated)."""
        return Listing.model_construct(**self.checked.values(position))

    def clean_rows(self) -> list[CleanRow]:
        return [
            CleanRow(
                int(self.batch_ids[position]),
                int(self.row_numbers[position]),
                self.listing(position),
                key,
                split,
                self.repairs.get(position, ()),
            )
            for position, key, split in zip(
                self.kept.tolist(), self.row_keys, self.splits, strict=True
            )
        ]


def clean_columns(
    batch_ids: Sequence[int] | np.ndarray,
    row_numbers: Sequence[int] | np.ndarray,
    columns: Mapping[str, Any],
    *,
    as_of: date,
    test_fraction: float,
    rejected: Mapping[int, Rejection] | None = None,
    seen: dict[str, tuple[int, int]] | None = None,
    memo: dict[Any, Any] | None = None,
) -> CleanBatch:
    """Validate, repair, dedupe and split a batch given as columns (RAW text, or any values).

    Each row gets the verdict :func:`validate_row` gives it; then duplicates are judged on the
    repaired listing (first one kept) and each kept row is split by its identity. ``rejected``
    names rows (by position) already rejected for what columns cannot hold (a missing required
    key, an unknown one). A batch cleaned in chunks passes the same ``seen`` (row key → the
    (batch, row) that has it) and ``memo`` (the validators' verdicts) to every chunk.
    """
    batch_ids = np.asarray(batch_ids, dtype=np.int64)
    row_numbers = np.asarray(row_numbers, dtype=np.int64)
    checked = check_columns(columns, as_of=as_of, memo=memo)
    named: dict[int, Rejection] = dict(rejected or {})
    failed = checked.failed_rows(REQUIRED_FIELDS)
    for position in np.flatnonzero(failed).tolist():
        named.setdefault(
            position,
            _rejection(
                int(batch_ids[position]), int(row_numbers[position]), checked.failures(position)
            ),
        )
    out = np.zeros(checked.rows, dtype=bool)
    out[list(named)] = True
    mending = np.flatnonzero(checked.failed_rows(OPTIONAL_FIELDS) & ~out)
    received = {  # RAW's text of the failed optional fields, for the repairs
        name: _raw_values(columns[name], mending)
        for name in OPTIONAL_FIELDS
        if len(checked.columns[name].failed_slots)
    }
    repairs = {
        position: _repairs(
            int(batch_ids[position]),
            int(row_numbers[position]),
            checked.failures(position),
            {name: raw[i] for name, raw in received.items()},
        )
        for i, position in enumerate(mending.tolist())
    }
    texts = {name: _slot_texts(checked.columns[name]) for name in FIELDS}
    candidates = np.flatnonzero(~out)
    keys, key_digests, identities = _hashes(checked, texts, candidates)
    # The first row of each key is kept; a later one is its duplicate (and its repairs go too).
    # setdefault hands back the (batch, row) already there, or the one just put in.
    seen = {} if seen is None else seen
    places = list(
        zip(batch_ids[candidates].tolist(), row_numbers[candidates].tolist(), strict=True)
    )
    firsts = list(map(seen.setdefault, keys, places))
    repeated = np.fromiter(map(is_not, firsts, places), dtype=bool, count=len(places))
    for i in np.flatnonzero(repeated).tolist():
        position = int(candidates[i])
        repairs.pop(position, None)
        named[position] = _duplicate(*places[i], firsts[i])
    single = np.flatnonzero(~repeated)
    return CleanBatch(
        batch_ids,
        row_numbers,
        checked,
        candidates[single],
        list(compress(keys, (~repeated).tolist())),
        repairs,
        [named[position] for position in sorted(named)],
        texts,
        _in_test_digests(identities, test_fraction)[single],
        key_digests[single],
    )


def _raw_values(values: Any, positions: np.ndarray) -> list[Any]:
    """The raw values at ``positions`` (a pyarrow column or a sequence), as Python values."""
    if isinstance(values, pa.ChunkedArray | pa.Array):
        return values.take(pa.array(positions, type=pa.int64())).to_pylist()
    return [values[position] for position in positions.tolist()]


_TEXT_TYPES = frozenset({str, type(None)})
_DATE_TYPES = frozenset({date, type(None)})


def _slot_texts(column: CheckedColumn) -> pa.Array:
    """Each slot's clean value as text (``str``, as row_key hashes it), null for null."""
    values = column.values
    types = set(map(type, values))
    if types <= _TEXT_TYPES:  # str(text) is the text itself
        return pa.array(values, type=pa.string())
    if types <= _DATE_TYPES:  # str(day) is its ISO form, as pyarrow writes a date32
        return pa.array(values, type=pa.date32()).cast(pa.string())
    missing = np.fromiter(map(is_, values, repeat(None)), dtype=bool, count=len(values))
    return pa.array(list(map(str, values)), type=pa.string(), mask=missing)


_EMPTY_SHA256 = hashlib.sha256()  # copied per row: cheaper than a new hash object's setup
_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _sha256s(materials: pa.Array) -> bytes:
    """SHA-256 of each material, the 32-byte digests concatenated."""
    copy = _EMPTY_SHA256.copy
    digests = []
    append = digests.append
    for material in materials.cast(pa.binary()).to_pylist():
        digest = copy()
        digest.update(material)
        append(digest.digest())
    return b"".join(digests)


def _hashes(
    checked: CheckedColumns, texts: dict[str, pa.Array], positions: np.ndarray
) -> tuple[list[str], np.ndarray, bytes]:
    """The rows' keys and identity digests, in one pass over the rows' materials.

    Each field's texts are taken for the rows once; the row key is SHA-256 over all fields
    (what :func:`row_key` hashes for the row's listing) as its first 32 hex digits, the identity
    SHA-256 over IDENTITY_FIELDS (:func:`listing_identity`'s material). Returns the keys as a
    list of hex texts and as an (n, 16) array of their bytes, and the identity digests
    concatenated."""
    if not len(positions):
        return [], np.zeros((0, ROW_KEY_DIGITS // 2), dtype=np.uint8), b""
    parts = {
        name: pc.fill_null(texts[name], "\x00").take(checked.columns[name].ids[positions])
        for name in FIELDS
    }
    keys = _sha256s(pc.binary_join_element_wise(*parts.values(), "\x1f"))
    identities = _sha256s(
        pc.binary_join_element_wise(*(parts[name] for name in IDENTITY_FIELDS), "\x1f")
    )
    # Hex of each key's first 16 bytes, for all rows at once: the key's 32 hex digits.
    count = len(positions)
    head = np.frombuffer(keys, dtype=np.uint8).reshape(count, 32)[:, : ROW_KEY_DIGITS // 2]
    digits = np.empty((count, ROW_KEY_DIGITS), dtype=np.uint8)
    digits[:, 0::2] = _HEX_DIGITS[head >> 4]
    digits[:, 1::2] = _HEX_DIGITS[head & 15]
    offsets = np.arange(0, ROW_KEY_DIGITS * (count + 1), ROW_KEY_DIGITS, dtype=np.int32)
    key_texts = pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(digits))
    return key_texts.to_pylist(), head, identities


def _in_test(identities: list[bytes], test_fraction: float) -> np.ndarray:
    """:func:`split_of` for many identity digests at once: True where the row is in test."""
    return _in_test_digests(b"".join(identities), test_fraction)


def _in_test_digests(identities: bytes, test_fraction: float) -> np.ndarray:
    """:func:`_in_test` for 32-byte digests given concatenated.

    ``int(key[:15], 16)`` is the digest's first 60 bits; divided by 16**15 (a power of two, so
    the division only scales the correctly rounded float), as split_of does."""
    if not identities:
        return np.zeros(0, dtype=bool)
    leading = np.frombuffer(identities, dtype=">u8")[::4] >> np.uint64(4)
    return leading.astype(np.float64) / float(16**15) < test_fraction


def clean_rows(
    rows: Iterable[RawRow], *, as_of: date, test_fraction: float
) -> tuple[list[CleanRow], list[Rejection]]:
    """Validate and normalise raw rows, repairing failed optional fields; duplicates within the
    rows (judged on the repaired listing) are rejected, first one kept."""
    rows = list(rows)
    context = {"as_of": as_of}
    odd = {}
    for position, row in enumerate(rows):
        keys = row.values.keys()
        if keys != _FIELD_SET and (keys - _FIELD_SET or _REQUIRED_SET - keys):
            # Rejected whatever its values; pydantic words a missing key with the whole record.
            odd[position] = validate_row(row, context)
    batch = clean_columns(
        [row.batch_id for row in rows],
        [row.row_number for row in rows],
        {name: [row.values.get(name) for row in rows] for name in FIELDS},
        as_of=as_of,
        test_fraction=test_fraction,
        rejected=odd,
    )
    return batch.clean_rows(), batch.rejections


def validate_row(
    row: RawRow, context: dict[str, Any]
) -> Rejection | tuple[Listing, tuple[Repair, ...]]:
    """The row's listing, with each failed optional field nulled and recorded as a Repair; a
    Rejection when any required field (or the record as a whole) fails, as a listing without its
    price or location is no listing. The optional/required split is the schema's.

    The verdict on one record, by pydantic; :func:`clean_columns` gives the same for a batch."""
    try:
        return Listing.model_validate(row.values, context=context), ()
    except ValidationError as error:
        failures = field_failures(error)
    if any(failure.field not in _REPAIRABLE for failure in failures):
        return _rejection(row.batch_id, row.row_number, failures)
    repairs = _repairs(row.batch_id, row.row_number, failures, row.values)
    nulled = {**row.values, **dict.fromkeys((repair.field for repair in repairs), None)}
    try:
        return Listing.model_validate(nulled, context=context), repairs
    except ValidationError as error:  # a null optional field always validates; never crash on it
        return _rejection(row.batch_id, row.row_number, field_failures(error))


def _rejection(batch_id: int, row_number: int, failures: list[FieldFailure]) -> Rejection:
    """Named by the first failed rule in field order; the reason lists every failure."""
    reason = "; ".join(failure.reason for failure in failures)
    return Rejection(batch_id, row_number, failures[0].rule, reason)


def _repairs(
    batch_id: int, row_number: int, failures: list[FieldFailure], raw: Mapping[str, Any]
) -> tuple[Repair, ...]:
    """One repair per failed field (its first rule; every sentence), keeping RAW's text."""
    by_field: dict[str, list[FieldFailure]] = {}
    for failure in failures:
        by_field.setdefault(failure.field, []).append(failure)
    return tuple(
        Repair(
            batch_id,
            row_number,
            name,
            failed[0].rule,
            str(raw.get(name)),
            "; ".join(failure.reason for failure in failed),
        )
        for name, failed in by_field.items()
    )


def _duplicate(batch_id: int, row_number: int, original: tuple[int, int]) -> Rejection:
    return Rejection(
        batch_id,
        row_number,
        DUPLICATE_RULE,
        f"exact duplicate of the listing in batch {original[0]}, row {original[1]}",
    )


# --- RAW in, CLEAN out ----------------------------------------------------------------------------


def pending_batches(raw: Connection, clean: Connection) -> list[tuple[int, date]]:
    """RAW batches not yet cleaned, oldest first, with the day they were received."""
    done = {row[0] for row in clean.execute(select(cleaned_batches.c.batch_id))}
    received = raw.execute(select(batches.c.id, batches.c.received_at).order_by(batches.c.id))
    return [(batch_id, at.date()) for batch_id, at in received if batch_id not in done]


_RAW_NAMES = ("row_number", *FIELDS)
_RAW_CSV = {
    "read_options": pa_csv.ReadOptions(column_names=list(_RAW_NAMES)),
    # PostgreSQL's CSV quotes any value holding a quote, comma or line break, and writes NULL
    # unquoted and empty, an empty string as "": exactly what these options read back.
    "parse_options": pa_csv.ParseOptions(newlines_in_values=True),
    "convert_options": pa_csv.ConvertOptions(
        column_types={
            name: pa.int64() if name == "row_number" else pa.string() for name in _RAW_NAMES
        },
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        null_values=[""],
    ),
}


def read_columns(
    raw: Connection, batch_id: int, start: int = 0, stop: int | None = None
) -> tuple[np.ndarray, dict[str, pa.Array]]:
    """RAW rows of a batch (those numbered ``start`` to before ``stop``) as columns, in row
    order: their row numbers and each field's text (or null).

    Read with ``COPY ... TO STDOUT (FORMAT csv)`` and parsed by pyarrow, so no Python object is
    made per value."""
    where = f"batch_id = {int(batch_id)} AND row_number >= {int(start)}"
    if stop is not None:
        where += f" AND row_number < {int(stop)}"
    query = (
        f"COPY (SELECT {', '.join(_RAW_NAMES)} FROM raw_data.listings WHERE {where} "
        "ORDER BY row_number) TO STDOUT WITH (FORMAT csv)"
    )
    buffer = io.BytesIO()
    with raw.connection.driver_connection.cursor() as cursor, cursor.copy(query) as copy:
        for data in copy:
            buffer.write(data)
    if not buffer.tell():
        return np.zeros(0, dtype=np.int64), {name: pa.array([], pa.string()) for name in FIELDS}
    buffer.seek(0)
    table = pa_csv.read_csv(buffer, **_RAW_CSV)
    return (
        table.column("row_number").to_numpy(),
        {name: table.column(name).combine_chunks() for name in FIELDS},
    )


def _chunks(raw: Connection, batch_id: int) -> Iterator[tuple[np.ndarray, dict[str, pa.Array]]]:
    """A RAW batch as consecutive ranges of row numbers, read one after the other."""
    last = raw.execute(
        select(func.max(raw_listings.c.row_number)).where(raw_listings.c.batch_id == batch_id)
    ).scalar()
    for start in range(0, -1 if last is None else last + 1, _CHUNK_ROWS):
        yield read_columns(raw, batch_id, start, start + _CHUNK_ROWS)


def _slot_fields(name: str, column: CheckedColumn, texts: pa.Array) -> pa.Array:
    """Each slot's clean value as a binary COPY field of its CLEAN column's type."""
    kind = clean_listings.c[name].type
    if isinstance(kind, Double):
        return binary_copy.numbers(pa.array(column.values, pa.float64()), ">f8")
    if isinstance(kind, SmallInteger):
        return binary_copy.numbers(pa.array(column.values, pa.int64()), ">i2")
    if isinstance(kind, Date):
        return binary_copy.dates(column.values)
    return binary_copy.texts(texts)  # text columns: the slot text is the value itself


def _copy_payload(batch: CleanBatch, rows: np.ndarray) -> bytes:
    """Binary COPY rows of ``clean_data.listings`` for the kept rows ``rows`` (indices into
    ``kept``), built for all of them at once: every field is a column (per distinct value, then
    taken for the rows), joined row by row by pyarrow."""
    positions = batch.kept[rows]
    fields = [
        binary_copy.fixed(batch.batch_ids[positions], ">i8"),
        binary_copy.fixed(batch.row_numbers[positions], ">i4"),
        *(
            _slot_fields(name, batch.checked.columns[name], batch.texts[name]).take(
                batch.checked.columns[name].ids[positions]
            )
            for name in FIELDS
        ),
        binary_copy.uuids(batch.key_digests[rows]),
        pc.if_else(pa.array(batch.in_test(rows)), _TEST, _TRAIN),
    ]
    return binary_copy.payload(fields)


def _copy(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[tuple]) -> None:
    driver = conn.connection.driver_connection
    with (
        driver.cursor() as cursor,
        cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


def _earlier(probe: Connection, keys: list[str]) -> dict[str, tuple[int, int]]:
    """Which row keys earlier batches already have in ``listings``, and where."""
    if not keys:
        return {}
    found = probe.execute(
        text(
            "SELECT replace(row_key::text, '-', ''), batch_id, row_number FROM clean_data.listings "
            "WHERE row_key = ANY(string_to_array(:keys, ',')::uuid[])"
        ),
        {"keys": ",".join(keys)},
    )
    return {key: (first_batch, first_row) for key, first_batch, first_row in found}


@dataclass
class _Sent:
    """What the chunks of a batch sent to ``listings`` so far, and what they left out."""

    cleaned: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    duplicates: list[Rejection] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)

    def add(self, copy: Any, batch: CleanBatch, earlier: dict[str, tuple[int, int]]) -> None:
        """Send a chunk's kept rows but those an earlier batch has (``earlier``: row key → its
        batch and row), which become duplicates and lose their repairs."""
        keys = batch.row_keys
        again = [i for i, key in enumerate(keys) if key in earlier] if earlier else []
        new = np.setdiff1d(np.arange(len(batch.kept)), again)
        if len(new):
            copy.write(_copy_payload(batch, new))
        self.cleaned += len(new)
        self.rejections += batch.rejections
        dropped = {int(batch.kept[i]) for i in again}
        self.duplicates += [
            _duplicate(
                int(batch.batch_ids[position]), int(batch.row_numbers[position]), earlier[key]
            )
            for position, key in ((int(batch.kept[i]), keys[i]) for i in again)
        ]
        self.repairs += [
            repair
            for position, kept_repairs in sorted(batch.repairs.items())
            if position not in dropped
            for repair in kept_repairs
        ]


def clean_batch(
    raw: Connection,
    clean: Connection,
    probe: Connection,
    batch_id: int,
    *,
    as_of: date,
    test_fraction: float,
) -> tuple[int, BatchOutcome]:
    """Clean one RAW batch into CLEAN in ``clean``'s transaction; (rows read, outcome).

    The batch goes through in chunks of row numbers: each is read, checked, hashed, looked up
    among earlier batches' row keys (on ``probe``, a second connection: earlier batches are
    committed) and sent into one COPY of ``listings`` by a writer thread, so the server stores
    a chunk while the next one is being cleaned. A chunk's lookup runs on a thread while the
    next chunk is read; the chunk is sent after both. Duplicates within the batch are judged
    across chunks (``seen``); a row equal to a listing of an earlier batch is a duplicate and
    its repairs are dropped with it. Rejections and repairs follow, then the batch's marker.
    """
    seen: dict[str, tuple[int, int]] = {}
    memo: dict[Any, Any] = {}
    rows_read = 0
    sent = _Sent()
    driver = clean.connection.driver_connection
    with (
        driver.cursor() as cursor,
        cursor.copy(
            f"COPY clean_data.listings ({', '.join(_CLEAN_COLUMNS)}) FROM STDIN (FORMAT binary)",
            writer=QueuedLibpqWriter(cursor),
        ) as copy,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="clean-lookup") as lookups,
    ):
        copy.write(binary_copy.SIGNATURE)
        waiting: tuple[CleanBatch, Future[dict[str, tuple[int, int]]]] | None = None
        for row_numbers, columns in _chunks(raw, batch_id):
            if waiting is not None:  # its lookup ran while this chunk was read
                sent.add(copy, waiting[0], waiting[1].result())
            batch = clean_columns(
                np.full(len(row_numbers), batch_id),
                row_numbers,
                columns,
                as_of=as_of,
                test_fraction=test_fraction,
                seen=seen,
                memo=memo,
            )
            rows_read += len(row_numbers)
            waiting = batch, lookups.submit(_earlier, probe, batch.row_keys)
        if waiting is not None:
            sent.add(copy, waiting[0], waiting[1].result())
        copy.write(binary_copy.TRAILER)
    cleaned, repairs = sent.cleaned, sent.repairs
    rejections = sent.rejections + sent.duplicates
    _copy(
        clean,
        "clean_data.rejected",
        ("batch_id", "row_number", "rule", "reason"),
        ((r.batch_id, r.row_number, r.rule, r.reason) for r in rejections),
    )
    _copy(clean, "clean_data.repairs", _REPAIR_COLUMNS, (r.as_tuple() for r in repairs))
    repaired = len({r.row_number for r in repairs})
    clean.execute(
        cleaned_batches.insert().values(
            batch_id=batch_id,
            rows_read=rows_read,
            cleaned=cleaned,
            rejected=len(rejections),
            repaired=repaired,
        )
    )
    outcome = BatchOutcome(
        cleaned, Counter(r.rule for r in rejections), repaired, Counter(r.rule for r in repairs)
    )
    return rows_read, outcome


def clean_pending(raw_engine: Engine, clean_engine: Engine, *, test_fraction: float) -> CleanResult:
    """Clean every RAW batch not cleaned yet; a second run finds nothing to do."""
    result = CleanResult()
    with raw_engine.connect() as raw:
        with clean_engine.connect() as clean:
            todo = pending_batches(raw, clean)
        for batch_id, received_on in todo:
            with clean_engine.begin() as clean, clean_engine.connect() as probe:
                clean.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
                already = clean.execute(
                    select(cleaned_batches.c.batch_id).where(cleaned_batches.c.batch_id == batch_id)
                ).first()
                if already:
                    continue
                rows_read, outcome = clean_batch(
                    raw,
                    clean,
                    probe,
                    batch_id,
                    as_of=received_on,
                    test_fraction=test_fraction,
                )
            result.add(batch_id, rows_read, outcome)
            _log_batch(batch_id, rows_read, outcome)
    if not todo:
        log.info("clean: no new RAW batches")
    return result


def _log_batch(batch_id: int, rows_read: int, outcome: BatchOutcome) -> None:
    log.info(
        "batch id %s cleaned: %d rows read, %d clean (%d repaired %s), %d rejected %s",
        batch_id,
        rows_read,
        outcome.cleaned,
        outcome.repaired,
        dict(outcome.repaired_by_rule) or "",
        sum(outcome.rejected_by_rule.values()),
        dict(outcome.rejected_by_rule) or "",
    )


# --- task function ------------------------------------------------------------------------------


def clean(settings: Settings) -> dict[str, Any]:
    """Clean all new RAW batches into CLEAN; returns counts by outcome and by rule."""
    raw_engine = make_engine(settings.raw_url)
    clean_engine = make_engine(settings.clean_url)
    try:
        return asdict(clean_pending(raw_engine, clean_engine, test_fraction=settings.test_fraction))
    finally:
        raw_engine.dispose()
        clean_engine.dispose()
