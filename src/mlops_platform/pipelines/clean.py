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
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from operator import attrgetter
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, Engine, select, text

from mlops_platform.schema import FIELDS, OPTIONAL_FIELDS, FieldFailure, Listing, field_failures
from mlops_platform.settings import Settings
from mlops_platform.storage.engine import make_engine
from mlops_platform.storage.tables import batches, cleaned_batches, raw_listings

log = logging.getLogger(__name__)

DUPLICATE_RULE = "duplicate"
_CLEAN_COLUMNS = ("batch_id", "row_number", *FIELDS, "row_key", "split")
_REPAIR_COLUMNS = ("batch_id", "row_number", "field", "rule", "original", "reason")
_REPAIRABLE = frozenset(OPTIONAL_FIELDS)
_LOCK_KEY = 0x6D6C6F7073  # "mlops": one cleaner at a time per CLEAN database


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


def row_key(listing: Listing) -> str:
    """Content hash of a clean listing: equal rows (exact duplicates) share it."""
    material = "\x1f".join(["\x00" if v is None else str(v) for v in _values(listing)])
    return hashlib.sha256(material.encode()).hexdigest()


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
    material = "\x1f".join(["\x00" if v is None else str(v) for v in _identity(listing)])
    return hashlib.sha256(material.encode()).hexdigest()


def split_of(key: str, test_fraction: float) -> str:
    """Train or test as a pure function of the house's identity: it never changes between runs."""
    return "test" if int(key[:15], 16) / 16**15 < test_fraction else "train"


def clean_rows(
    rows: Iterable[RawRow], *, as_of: date, test_fraction: float
) -> tuple[list[CleanRow], list[Rejection]]:
    """Validate and normalise raw rows, repairing failed optional fields; duplicates within the
    rows (judged on the repaired listing) are rejected, first one kept."""
    accepted: list[CleanRow] = []
    rejections: list[Rejection] = []
    first_seen: dict[str, tuple[int, int]] = {}
    context = {"as_of": as_of}
    for row in rows:
        checked = validate_row(row, context)
        if isinstance(checked, Rejection):
            rejections.append(checked)
            continue
        listing, repairs = checked
        key = row_key(listing)
        if key in first_seen:
            rejections.append(_duplicate(row, first_seen[key]))
            continue
        first_seen[key] = (row.batch_id, row.row_number)
        accepted.append(
            CleanRow(
                row.batch_id,
                row.row_number,
                listing,
                key,
                split_of(listing_identity(listing), test_fraction),
                repairs,
            )
        )
    return accepted, rejections


def validate_row(
    row: RawRow, context: dict[str, Any]
) -> Rejection | tuple[Listing, tuple[Repair, ...]]:
    """The row's listing, with each failed optional field nulled and recorded as a Repair; a
    Rejection when any required field (or the record as a whole) fails, as a listing without its
    price or location is no listing. The optional/required split is the schema's."""
    try:
        return Listing.model_validate(row.values, context=context), ()
    except ValidationError as error:
        failures = field_failures(error)
    if any(failure.field not in _REPAIRABLE for failure in failures):
        return _rejection(row, failures)
    repairs = _repairs(row, failures)
    nulled = {**row.values, **dict.fromkeys((repair.field for repair in repairs), None)}
    try:
        return Listing.model_validate(nulled, context=context), repairs
    except ValidationError as error:  # a null optional field always validates; never crash on it
        return _rejection(row, field_failures(error))


def _rejection(row: RawRow, failures: list[FieldFailure]) -> Rejection:
    """Named by the first failed rule in field order; the reason lists every failure."""
    reason = "; ".join(failure.reason for failure in failures)
    return Rejection(row.batch_id, row.row_number, failures[0].rule, reason)


def _repairs(row: RawRow, failures: list[FieldFailure]) -> tuple[Repair, ...]:
    """One repair per failed field (its first rule; every sentence), keeping RAW's text."""
    by_field: dict[str, list[FieldFailure]] = {}
    for failure in failures:
        by_field.setdefault(failure.field, []).append(failure)
    return tuple(
        Repair(
            row.batch_id,
            row.row_number,
            name,
            failed[0].rule,
            str(row.values.get(name)),
            "; ".join(failure.reason for failure in failed),
        )
        for name, failed in by_field.items()
    )


def _duplicate(row: RawRow, original: tuple[int, int]) -> Rejection:
    return Rejection(
        row.batch_id,
        row.row_number,
        DUPLICATE_RULE,
        f"exact duplicate of the listing in batch {original[0]}, row {original[1]}",
    )


def pending_batches(raw: Connection, clean: Connection) -> list[tuple[int, date]]:
    """RAW batches not yet cleaned, oldest first, with the day they were received."""
    done = {row[0] for row in clean.execute(select(cleaned_batches.c.batch_id))}
    received = raw.execute(select(batches.c.id, batches.c.received_at).order_by(batches.c.id))
    return [(batch_id, at.date()) for batch_id, at in received if batch_id not in done]


def read_batch(raw: Connection, batch_id: int) -> list[RawRow]:
    columns = [raw_listings.c[name] for name in FIELDS]
    query = (
        select(raw_listings.c.row_number, *columns)
        .where(raw_listings.c.batch_id == batch_id)
        .order_by(raw_listings.c.row_number)
    )
    return [
        RawRow(batch_id, r[0], dict(zip(FIELDS, r[1:], strict=True))) for r in raw.execute(query)
    ]


def _copy(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[tuple]) -> None:
    driver = conn.connection.driver_connection
    with (
        driver.cursor() as cursor,
        cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


def write_batch(
    clean: Connection,
    batch_id: int,
    rows_read: int,
    accepted: list[CleanRow],
    rejections: list[Rejection],
) -> BatchOutcome:
    """Insert one batch's outcome; rows equal to listings of earlier batches become duplicates
    (and their repairs are dropped with them: only rows in ``listings`` have repairs)."""
    columns = ", ".join(_CLEAN_COLUMNS)
    clean.execute(
        text(
            f"CREATE TEMP TABLE clean_staging ON COMMIT DROP AS SELECT {columns} "
            "FROM clean_data.listings WITH NO DATA"
        )
    )
    _copy(clean, "clean_staging", _CLEAN_COLUMNS, (row.as_tuple() for row in accepted))
    inserted = clean.execute(
        text(
            f"INSERT INTO clean_data.listings ({columns}) SELECT {columns} FROM clean_staging "
            "ON CONFLICT (row_key) DO NOTHING"
        )
    ).rowcount
    earlier = clean.execute(
        text(
            "SELECT s.row_number, l.batch_id, l.row_number FROM clean_staging s "
            "JOIN clean_data.listings l USING (row_key) WHERE l.batch_id <> s.batch_id "
            "ORDER BY s.row_number"
        )
    ).all()
    rejections = rejections + [
        _duplicate(RawRow(batch_id, number, {}), (first_batch, first_row))
        for number, first_batch, first_row in earlier
    ]
    _copy(
        clean,
        "clean_data.rejected",
        ("batch_id", "row_number", "rule", "reason"),
        ((r.batch_id, r.row_number, r.rule, r.reason) for r in rejections),
    )
    repairs = _kept_repairs(accepted, {number for number, *_ in earlier})
    _copy(clean, "clean_data.repairs", _REPAIR_COLUMNS, (r.as_tuple() for r in repairs))
    repaired = len({r.row_number for r in repairs})
    clean.execute(
        cleaned_batches.insert().values(
            batch_id=batch_id,
            rows_read=rows_read,
            cleaned=inserted,
            rejected=len(rejections),
            repaired=repaired,
        )
    )
    return BatchOutcome(
        inserted, Counter(r.rule for r in rejections), repaired, Counter(r.rule for r in repairs)
    )


def _kept_repairs(accepted: list[CleanRow], duplicates: set[int]) -> list[Repair]:
    """Repairs of the rows that went into ``listings`` (not those found to repeat a listing)."""
    return [r for row in accepted if row.row_number not in duplicates for r in row.repairs]


def clean_pending(raw_engine: Engine, clean_engine: Engine, *, test_fraction: float) -> CleanResult:
    """Clean every RAW batch not cleaned yet; a second run finds nothing to do."""
    result = CleanResult()
    with raw_engine.connect() as raw:
        with clean_engine.connect() as clean:
            todo = pending_batches(raw, clean)
        for batch_id, received_on in todo:
            with clean_engine.begin() as clean:
                clean.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
                already = clean.execute(
                    select(cleaned_batches.c.batch_id).where(cleaned_batches.c.batch_id == batch_id)
                ).first()
                if already:
                    continue
                rows = read_batch(raw, batch_id)
                accepted, rejections = clean_rows(
                    rows, as_of=received_on, test_fraction=test_fraction
                )
                outcome = write_batch(clean, batch_id, len(rows), accepted, rejections)
            result.add(batch_id, len(rows), outcome)
            _log_batch(batch_id, len(rows), outcome)
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
