"""Fetch a batch from the data source and keep it in RAW exactly as received.

One batch is one transaction: the ``raw_data.batches`` row and every listing (sent with COPY)
commit together or not at all. Values are stored as the text the source sent; a row's hash is the
SHA-256 of its stored form. The batch's SHA-256 is unique, so a batch sent twice is recognised
and skipped; re-running the task changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from operator import itemgetter
from typing import Any

from psycopg.copy import QueuedLibpqWriter
from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from mlops_platform.datasource.client import Batch, DataSourceClient, Exhausted
from mlops_platform.schema import FIELDS
from mlops_platform.settings import Settings
from mlops_platform.storage.engine import make_engine
from mlops_platform.storage.tables import batches

log = logging.getLogger(__name__)

_COPY_COLUMNS = ("batch_id", "row_number", *FIELDS, "extra", "row_hash")
# NULL is written as U+0002 rather than COPY's default \N, so a row needs no escaping unless a
# value itself holds a backslash, tab, newline, CR, NUL or U+0002 (checked per chunk, in C).
_NULL = "\x02"
_COPY_SQL = (
    f"COPY raw_data.listings ({', '.join(_COPY_COLUMNS)}) FROM STDIN "
    "WITH (FORMAT text, NULL E'\\x02')"
)
_ESCAPES = str.maketrans(
    {
        "\\": "\\\\",
        "\t": "\\t",
        "\n": "\\n",
        "\r": "\\r",
        "\x02": "\\x02",
        "\x00": "\\\\u0000",  # PostgreSQL text cannot hold NUL: kept as its JSON escape
    }
)
_FIELD_COUNT = len(FIELDS)
_FIELD_SET = frozenset(FIELDS)
_get_fields = itemgetter(*FIELDS)
_CHUNK_ROWS = 4_000


@dataclass(frozen=True)
class IngestResult:
    batch_id: int
    group_number: int
    day: str
    batch_number: int
    rows: int
    stored: bool  # False: the same batch was already in RAW, nothing was written
    sha256: str


def as_text(value: Any) -> str | None:
    """A value's text as sent: strings as they are, anything else as its JSON text."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, allow_nan=True, ensure_ascii=False)


def _escaped(value: Any) -> str:
    text = as_text(value)
    return _NULL if text is None else text.translate(_ESCAPES)


def copy_line(record: dict[str, Any]) -> str:
    """The record's 12 fields and its extra keys (as JSON) as one escaped COPY text line."""
    fields = "\t".join(_escaped(record.get(name)) for name in FIELDS)
    others = sorted(record.keys() - _FIELD_SET)
    extra = json.dumps({k: record[k] for k in others}, allow_nan=True) if others else None
    return fields + "\t" + _escaped(extra)


def _row(batch_id: int, number: int, line: str) -> str:
    return f"{batch_id}\t{number}\t{line}\t{hashlib.sha256(line.encode()).hexdigest()}\n"


def copy_chunk(batch_id: int, records: list[dict[str, Any]], start: int, stop: int) -> str:
    """COPY text for ``records[start:stop]``; a row's hash is the SHA-256 of its line.

    The common row (12 text-or-null values) is joined as it is; the chunk is then checked as a
    whole, and if any value needed escaping the chunk is rebuilt row by row with
    :func:`copy_line`. Both ways give the same line for the same record.
    """
    out = []
    nulls = 0
    for number in range(start, stop):
        record = records[number]
        try:
            if len(record) != _FIELD_COUNT:
                raise KeyError
            values = _get_fields(record)
            line = "\t".join([_NULL if v is None else v for v in values]) + "\t" + _NULL
            nulls += values.count(None) + 1
        except (KeyError, TypeError):
            line = copy_line(record)
            nulls += line.count(_NULL)
        out.append(_row(batch_id, number, line))
    chunk = "".join(out)
    rows = stop - start
    if (
        chunk.count("\n") == rows
        and chunk.count("\t") == rows * (len(_COPY_COLUMNS) - 1)
        and chunk.count(_NULL) == nulls
        and "\\" not in chunk
        and "\r" not in chunk
        and "\x00" not in chunk
    ):
        return chunk
    return "".join(_row(batch_id, n, copy_line(records[n])) for n in range(start, stop))


def store_batch(
    engine: Engine,
    batch: Batch,
    *,
    before_commit: Callable[[], None] | None = None,
) -> IngestResult:
    """Write one batch to RAW atomically; a batch already stored is skipped.

    Rows are turned into COPY lines chunk by chunk while a writer thread streams the previous
    chunk, so our Python work overlaps the server's. ``before_commit`` is a test seam: it runs
    after the rows are sent and before the commit, so a test can inject a failure there and see
    that nothing partial survives.
    """
    records = batch.records
    with engine.begin() as conn:
        batch_id = conn.execute(
            pg_insert(batches)
            .values(
                source=batch.source,
                group_number=batch.group_number,
                day=batch.day,
                batch_number=batch.batch_number,
                row_count=len(records),
                sha256=batch.sha256,
            )
            .on_conflict_do_nothing(index_elements=["sha256"])
            .returning(batches.c.id)
        ).scalar()
        if batch_id is None:
            existing = conn.execute(
                select(batches.c.id).where(batches.c.sha256 == batch.sha256)
            ).scalar()
            log.info(
                "batch %s of group %s/%s already in RAW as batch id %s: skipped",
                batch.batch_number,
                batch.group_number,
                batch.day,
                existing,
            )
            return _result(existing, batch, stored=False)
        driver = conn.connection.driver_connection
        with (
            driver.cursor() as cursor,
            cursor.copy(_COPY_SQL, writer=QueuedLibpqWriter(cursor)) as copy,
        ):
            for start in range(0, len(records), _CHUNK_ROWS):
                stop = min(start + _CHUNK_ROWS, len(records))
                copy.write(copy_chunk(batch_id, records, start, stop))
        if before_commit is not None:
            before_commit()
    log.info(
        "batch %s of group %s/%s stored in RAW as batch id %s: %d rows",
        batch.batch_number,
        batch.group_number,
        batch.day,
        batch_id,
        len(records),
    )
    return _result(batch_id, batch, stored=True)


def _result(batch_id: int, batch: Batch, *, stored: bool) -> IngestResult:
    return IngestResult(
        batch_id,
        batch.group_number,
        batch.day,
        batch.batch_number,
        len(batch.records),
        stored,
        batch.sha256,
    )


# --- task functions: settings and plain values in, plain values out ---------------------------


def fetch(settings: Settings) -> dict[str, Any] | None:
    """Next batch from the data source as a plain dict, or None when the source is exhausted."""
    with DataSourceClient.from_settings(settings) as client:
        answer = client.fetch(settings.group_number, settings.day)
    if isinstance(answer, Exhausted):
        log.info(
            "no more data for group %s/%s: %s", answer.group_number, answer.day, answer.message
        )
        return None
    log.info(
        "fetched batch %s of group %s/%s: %d rows",
        answer.batch_number,
        answer.group_number,
        answer.day,
        len(answer.records),
    )
    return answer.to_dict()


def ingest(settings: Settings, batch: dict[str, Any]) -> dict[str, Any]:
    """Store a fetched batch in RAW (idempotent); returns what happened as a plain dict."""
    engine = make_engine(settings.raw_url)
    try:
        return asdict(store_batch(engine, Batch.from_dict(batch)))
    finally:
        engine.dispose()
