"""Every prediction served goes to ``raw_data.inference_logs``, without a request ever waiting.

Requests append rows to a bounded in-memory queue (:meth:`InferenceLog.submit`, no I/O), each
already encoded as a line of COPY text: JSON is encoded once, in the request, by orjson, and the
writer only joins lines, so it holds the GIL for little while requests are being served. One
background task writes them with COPY in batches of ``inference_log_batch_size``, at least every
``inference_log_flush_s``. A batch leaves the queue only after its transaction committed, so
while RAW is down rows wait (up to ``inference_log_queue_size``) and are written once it is back;
rows beyond the bound are dropped, counted and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import numpy as np
import orjson
import psycopg
from sqlalchemy import Engine, create_engine

from mlops_platform.serving.metrics import ApiMetrics
from mlops_platform.storage.engine import normalise_url

log = logging.getLogger(__name__)

_COPY_SQL = (
    "COPY raw_data.inference_logs "
    "(logged_at, model_name, model_version, run_id, input, output, latency_ms) FROM STDIN"
)
_MAX_RETRY_S = 5.0  # longest pause between write attempts while RAW is down
_WARN_EVERY_S = 30.0  # at most one "dropping rows" warning per this many seconds

# One row of COPY text: logged_at, model_name, model_version, run_id, input, output, latency_ms.
Row = bytes


class InferenceLog:
    """The queue and its writer task; start with :meth:`start`, stop with :meth:`close`."""

    def __init__(
        self,
        url: str,
        metrics: ApiMetrics,
        *,
        queue_size: int,
        batch_size: int,
        flush_s: float,
    ) -> None:
        self.url = url
        self.metrics = metrics
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.flush_s = flush_s
        self._queue: deque[Row] = deque()
        self._engine: Engine | None = None
        self._wake: asyncio.Event | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._down_since: float | None = None
        self._warned_at = float("-inf")
        self._dropped_unreported = 0

    def submit(
        self,
        ref: dict[str, str],
        records: Sequence[dict[str, Any]],
        prices: np.ndarray,
        latency_ms: float,
    ) -> None:
        """Queue one row per prediction; never blocks (call it from the event loop)."""
        room = self.queue_size - len(self._queue)
        if room < len(records):
            self._drop(len(records) - max(room, 0))
            records, prices = records[: max(room, 0)], prices[: max(room, 0)]
        self._queue.extend(copy_rows(ref, records, prices, latency_ms))
        self.metrics.log_queue_depth.set(len(self._queue))
        if self._wake is not None and len(self._queue) >= self.batch_size:
            self._wake.set()

    def _drop(self, count: int) -> None:
        self.metrics.log_dropped.inc(count)
        self._dropped_unreported += count
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:
            log.warning(
                "inference-log queue is full (%d rows waiting for RAW): dropped %d rows",
                len(self._queue),
                self._dropped_unreported,
            )
            self._warned_at, self._dropped_unreported = now, 0

    async def start(self) -> None:
        self._engine = create_engine(
            normalise_url(self.url),
            pool_pre_ping=True,
            pool_size=1,
            max_overflow=0,
            connect_args={"connect_timeout": 5},
        )
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="inference-log-writer")

    async def close(self, timeout_s: float = 10.0) -> None:
        """Stop the writer after one last drain (up to ``timeout_s``); report what is lost.

        The writer is asked to stop, not cancelled: a cancelled drain could abandon a batch the
        database already committed, and the next drain would write it twice.
        """
        if self._task is not None and self._wake is not None:
            self._stop.set()
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                self._task.cancel()
        if self._queue:
            log.error("shutting down with %d inference-log rows unwritten", len(self._queue))
        if self._engine is not None:
            self._engine.dispose()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_s)
            self._wake.clear()
            written = await self._drain()
            if self._stop.is_set():
                return
            if not written:  # RAW is down: wait (a full queue must not make this spin)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self._retry_delay())

    def _retry_delay(self) -> float:
        down_for = time.monotonic() - (self._down_since or time.monotonic())
        return min(_MAX_RETRY_S, max(self.flush_s, down_for / 4))

    async def _drain(self) -> bool:
        """Write everything queued, batch by batch; False when RAW refused (rows stay queued)."""
        while self._queue:
            batch = list(islice(self._queue, self.batch_size))
            try:
                written = await self._write_batch(batch)
            except Exception as error:  # RAW down, unreachable or not migrated: keep the rows
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    log.warning(
                        "cannot write to the RAW store, %d inference-log rows wait in memory: %s",
                        len(self._queue),
                        error,
                    )
                return False
            for _ in batch:
                self._queue.popleft()
            self.metrics.log_written.inc(written)
            self.metrics.log_queue_depth.set(len(self._queue))
            if self._down_since is not None:
                log.warning(
                    "RAW store writable again after %.0fs", time.monotonic() - self._down_since
                )
                self._down_since = None
        return True

    async def _write_batch(self, batch: list[Row]) -> int:
        """Rows written; a batch RAW refuses for a value is written row by row instead."""
        try:
            await asyncio.to_thread(self._write, batch)
        except psycopg.DataError as error:  # a value RAW cannot store: not an outage
            log.error("an inference-log batch holds a value RAW refuses (%s)", error)
            written = await asyncio.to_thread(self._write_each, batch)
            self.metrics.log_dropped.inc(len(batch) - written)
            return written
        return len(batch)

    def _write(self, batch: list[Row]) -> None:
        """One transaction: the batch is in RAW entirely or not at all."""
        assert self._engine is not None
        with self._engine.begin() as conn:
            driver = conn.connection.driver_connection
            with driver.cursor() as cursor, cursor.copy(_COPY_SQL) as copy:
                copy.write(b"".join(batch))

    def _write_each(self, batch: list[Row]) -> int:
        """Row by row, skipping the ones RAW refuses, so one bad value cannot block the queue."""
        written = 0
        for row in batch:
            try:
                self._write([row])
            except psycopg.DataError as error:
                log.error("dropped an inference-log row RAW refuses: %s (%r)", error, row)
            else:
                written += 1
        return written


def copy_rows(
    ref: dict[str, str], records: Sequence[dict[str, Any]], prices: np.ndarray, latency_ms: float
) -> list[Row]:
    """The COPY text line of each prediction (the columns of ``_COPY_SQL``, tab-separated)."""
    if not len(records):
        return []
    now = datetime.now(UTC).isoformat()
    head = "\t".join(_escape(v) for v in (now, ref["name"], ref["version"], ref["run_id"]))
    head = head.replace("%", "%%")  # it becomes part of a %-template
    template = f'{head}\t%s\t{{"price":%s}}\t{latency_ms!r}\n'.encode()
    # The prices as JSON, split: numbers and null never hold a comma.
    outputs = orjson.dumps(prices, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")
    return [
        template % (_json(record), output) for record, output in zip(records, outputs, strict=True)
    ]


def _escape(text: str) -> str:
    """A value as COPY text: backslash, tab, newline and carriage return escaped."""
    return text.translate(_COPY_ESCAPES)


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _json(value: Any) -> bytes:
    """JSON for a JSONB column, as COPY text. orjson writes no raw control characters, so only
    backslashes need escaping; NUL, which PostgreSQL text cannot hold, becomes U+FFFD."""
    text = orjson.dumps(value)
    if b"\\" not in text:
        return text
    return text.replace(b"\\u0000", b"\\ufffd").replace(b"\\", b"\\\\")
