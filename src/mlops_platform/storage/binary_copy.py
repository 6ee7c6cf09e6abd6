"""PostgreSQL's binary COPY format, built a whole column at a time.

Why binary: the server stores binary fields as they come (a double's 8 bytes, a date's day
number), where text COPY makes it parse every number, date and uuid again: for CLEAN's listings
that parsing is ~half of the server's COPY work without the indexes, and ~10 % of the server's
CPU for a whole clean with them (docs/BENCHMARKS.md). Why a
column at a time: psycopg's ``write_row`` formats one Python value after another; here every
field is a pyarrow binary array (per row: the field's length, then its bytes; or -1 for NULL)
made by numpy and pyarrow kernels, and :func:`payload` joins them row by row.

The format: https://www.postgresql.org/docs/current/sql-copy.html (Binary Format). A stream is
:data:`SIGNATURE`, the rows, then :data:`TRAILER`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags (no OIDs), header extension 0
TRAILER = b"\xff\xff"  # a field count of -1
NULL = b"\xff\xff\xff\xff"  # a field length of -1
_POSTGRES_EPOCH = (date(2000, 1, 1) - date(1970, 1, 1)).days  # dates count days from 2000-01-01


def fixed(values: np.ndarray, dtype: str, missing: np.ndarray | None = None) -> pa.Array:
    """Fixed-width fields (``dtype`` a big-endian numpy type: ``>f8``, ``>i2``, ``>i4``, ``>i8``);
    NULL where ``missing`` is True. An integer that does not fit ``dtype`` is an error, never a
    wrapped-around number."""
    data = np.ascontiguousarray(values, dtype=dtype)
    if data.dtype.kind == "i" and not np.array_equal(data, values):
        raise ValueError(f"a value does not fit the column's {data.dtype.itemsize}-byte integer")
    return _prefixed(data.view(np.uint8).reshape(len(data), data.dtype.itemsize), missing)


def uuids(digests: np.ndarray) -> pa.Array:
    """Uuid fields from an (n, 16) array of bytes."""
    return _prefixed(np.ascontiguousarray(digests, dtype=np.uint8).reshape(-1, 16))


def _prefixed(data: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """Rows of ``data`` (an (n, width) uint8 array), each after its length."""
    count, width = data.shape
    fields = np.empty((count, 4 + width), dtype=np.uint8)
    fields[:, :4] = np.frombuffer(width.to_bytes(4, "big"), dtype=np.uint8)
    fields[:, 4:] = data
    array = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(4 + width), count, [None, pa.py_buffer(fields)]
    ).cast(pa.binary())
    if missing is not None and missing.any():
        array = pc.if_else(pa.array(missing), pa.scalar(NULL, pa.binary()), array)
    return array


def texts(values: pa.Array) -> pa.Array:
    """Text fields from a string array (UTF-8, the server's encoding); NULL for null."""
    lengths = np.ascontiguousarray(
        pc.binary_length(values).fill_null(-1).to_numpy(zero_copy_only=False), dtype=">i4"
    )
    prefixes = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(4), len(lengths), [None, pa.py_buffer(lengths.view(np.uint8))]
    ).cast(pa.binary())
    return pc.binary_join_element_wise(prefixes, values.cast(pa.binary()).fill_null(b""), b"")


def numbers(values: Sequence[float | int | None] | pa.Array, dtype: str) -> pa.Array:
    """Numeric fields from Python numbers or a numeric array (None → NULL)."""
    array = values if isinstance(values, pa.Array) else pa.array(values)
    missing = array.is_null().to_numpy(zero_copy_only=False)
    filled = array.fill_null(0) if array.null_count else array
    return fixed(filled.to_numpy(zero_copy_only=False), dtype, missing)


def dates(values: Sequence[date | None] | pa.Array) -> pa.Array:
    """Date fields (days since 2000-01-01) from Python dates or a date32 array (None → NULL)."""
    array = values if isinstance(values, pa.Array) else pa.array(values, pa.date32())
    days = array.cast(pa.int32())
    missing = days.is_null().to_numpy(zero_copy_only=False)
    offset = days.fill_null(0).to_numpy(zero_copy_only=False) - _POSTGRES_EPOCH
    return fixed(offset, ">i4", missing)


def payload(fields: Sequence[pa.Array]) -> bytes:
    """The rows of equally long field arrays, as one block of COPY data (no signature or
    trailer: a stream may be sent in many blocks)."""
    count = pa.scalar(len(fields).to_bytes(2, "big"), pa.binary())
    rows = pc.binary_join_element_wise(count, *fields, b"")
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32)
    start, stop = offsets[rows.offset], offsets[rows.offset + len(rows)]
    return rows.buffers()[2].to_pybytes()[start:stop]
