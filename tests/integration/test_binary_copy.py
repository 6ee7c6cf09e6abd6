"""Binary COPY fields built column-wise read back from a real PostgreSQL as what was sent."""

from __future__ import annotations

import uuid
from datetime import date

import numpy as np
import psycopg
import pyarrow as pa
import pytest

from mlops_platform.local.postgres import LocalPostgres
from mlops_platform.storage import binary_copy

TEXTS = ["plain", None, "", "Ünïcödé\tTab\nLine\\N", '"quoted", comma', "\\"]
DAYS = [date(2000, 1, 1), None, date(1999, 12, 31), date(1900, 2, 28), date(2026, 12, 2), None]
DOUBLES = [325000.0, None, 0.0, 1e-9, -2.5, 1e300]
SMALL = [0, None, 3, -1, 32767, -32768]
DIGESTS = np.frombuffer(bytes(range(16 * 6)), dtype=np.uint8).reshape(6, 16)


def _copy_in(conn: psycopg.Connection, table: str, columns: str, blocks: list[bytes]) -> None:
    with (
        conn.cursor() as cursor,
        cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT binary)") as copy,
    ):
        copy.write(binary_copy.SIGNATURE)
        for block in blocks:
            copy.write(block)
        copy.write(binary_copy.TRAILER)


def test_every_field_kind_reads_back_as_sent(postgres: LocalPostgres) -> None:
    """Text (with what text COPY escapes), double, smallint, int, bigint, date and uuid, NULLs
    in each, rows sent in two blocks: the table holds exactly the values given."""
    fields = [
        binary_copy.fixed(np.arange(6) + 2**40, ">i8"),
        binary_copy.fixed(np.arange(6), ">i4"),
        binary_copy.texts(pa.array(TEXTS, pa.string())),
        binary_copy.numbers(pa.array(DOUBLES, pa.float64()), ">f8"),
        binary_copy.numbers(pa.array(SMALL, pa.int64()), ">i2"),
        binary_copy.dates(DAYS),
        binary_copy.uuids(DIGESTS),
    ]
    with psycopg.connect(postgres.conninfo(), autocommit=True) as conn:
        conn.execute(
            "CREATE TEMP TABLE kinds (big bigint, n integer, t text, d double precision, "
            "s smallint, day date, u uuid)"
        )
        _copy_in(
            conn,
            "kinds",
            "big, n, t, d, s, day, u",
            [
                binary_copy.payload([f.slice(0, 2) for f in fields]),
                binary_copy.payload([f.slice(2) for f in fields]),
            ],
        )
        rows = conn.execute("SELECT big, n, t, d, s, day, u FROM kinds ORDER BY n").fetchall()
    assert rows == [
        (2**40 + i, i, TEXTS[i], DOUBLES[i], SMALL[i], DAYS[i], uuid.UUID(bytes=bytes(DIGESTS[i])))
        for i in range(6)
    ]


def test_an_integer_too_big_for_its_column_is_refused_not_wrapped() -> None:
    with pytest.raises(ValueError, match="2-byte integer"):
        binary_copy.numbers(pa.array([1, 40000], pa.int64()), ">i2")


def test_no_rows_make_no_data() -> None:
    empty = binary_copy.texts(pa.array([], pa.string()))
    assert binary_copy.payload([empty, binary_copy.fixed(np.zeros(0, np.int64), ">i8")]) == b""
