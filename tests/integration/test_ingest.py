"""Ingest into a real PostgreSQL: lossless, atomic, idempotent, in two databases or one."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from sqlalchemy import func, select, text

from mlops_platform.datasource.client import Batch
from mlops_platform.datasource.simulator import SimulatorConfig, generate_batch
from mlops_platform.pipelines.ingest import ingest, store_batch
from mlops_platform.schema import FIELDS
from mlops_platform.storage.tables import batches, raw_listings
from tests.conftest import Stores
from tests.support import received

CONFIG = SimulatorConfig(batches=4, batch_size=500, seed=11)


def _batch(number: int = 1) -> Batch:
    return received(generate_batch(CONFIG, 1, "Wednesday", number), number)


def _counts(stores: Stores) -> tuple[int, int]:
    with stores.raw.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(batches)).scalar_one(),
            conn.execute(select(func.count()).select_from(raw_listings)).scalar_one(),
        )


def _stored_rows(stores: Stores, batch_id: int) -> list[dict[str, Any]]:
    with stores.raw.connect() as conn:
        rows = conn.execute(
            select(raw_listings)
            .where(raw_listings.c.batch_id == batch_id)
            .order_by(raw_listings.c.row_number)
        ).mappings()
        return [dict(r) for r in rows]


def test_records_are_stored_exactly_as_sent(stores: Stores) -> None:
    batch = _batch()
    result = store_batch(stores.raw, batch)
    assert result.stored
    assert result.rows == 500
    rows = _stored_rows(stores, result.batch_id)
    assert [r["row_number"] for r in rows] == list(range(500))
    for record, row in zip(batch.records, rows, strict=True):
        assert {f: row[f] for f in FIELDS} == {f: record.get(f) for f in FIELDS}
        assert len(row["row_hash"]) == 64
    sent_as_text = sum(1 for r in rows if r["bed"] and r["bed"].endswith(".0"))
    assert sent_as_text > 0  # e.g. "3.0" stays "3.0", not 3


def test_awkward_values_survive_the_round_trip(stores: Stores) -> None:
    awkward = {
        "city": "tab\there\\N back\\slash\nnewline\r",
        "state": "\x02",
        "status": "",
        "street": "nul\x00byte",
        "price": "NaN",
        "bed": None,
        "surprise": [1, {"a": None}],
    }
    result = store_batch(stores.raw, Batch.of("src", 1, "Monday", 1, [awkward]))
    (row,) = _stored_rows(stores, result.batch_id)
    assert row["city"] == awkward["city"]
    assert row["state"] == "\x02"
    assert row["status"] == ""  # an empty string is not NULL
    assert row["street"] == "nul\\u0000byte"  # PostgreSQL text cannot hold NUL
    assert (row["price"], row["bed"], row["zip_code"]) == ("NaN", None, None)
    assert json.loads(row["extra"]) == {"surprise": [1, {"a": None}]}


def test_the_same_batch_sent_twice_is_stored_once(stores: Stores) -> None:
    first = store_batch(stores.raw, _batch())
    again = store_batch(stores.raw, _batch())
    assert (first.stored, again.stored) == (True, False)
    assert again.batch_id == first.batch_id
    assert _counts(stores) == (1, 500)


def test_the_task_run_twice_is_a_no_op(stores: Stores) -> None:
    settings = stores.settings()
    payload = _batch(2).to_dict()
    assert ingest(settings, payload)["stored"] is True
    assert ingest(settings, payload)["stored"] is False
    assert _counts(stores) == (1, 500)


def test_concurrent_runs_of_one_batch_store_it_once(stores: Stores) -> None:
    batch = _batch(3)
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(store_batch(stores.raw, batch).stored))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, False, True]
    assert _counts(stores) == (1, 500)


class InjectedFault(Exception):
    """Raised by the test between sending the rows and committing."""


def test_a_failure_before_commit_leaves_no_trace(stores: Stores) -> None:
    def crash() -> None:
        with stores.raw.connect() as other:  # the rows were sent: this session can't see them
            assert other.execute(select(func.count()).select_from(raw_listings)).scalar() == 0
        raise InjectedFault

    with pytest.raises(InjectedFault):
        store_batch(stores.raw, _batch(), before_commit=crash)
    assert _counts(stores) == (0, 0)
    assert store_batch(stores.raw, _batch()).stored  # and a retry then stores it whole
    assert _counts(stores) == (1, 500)


def test_shared_database_holds_both_stores(shared_stores: Stores) -> None:
    store_batch(shared_stores.raw, _batch())
    with shared_stores.raw.connect() as conn:
        schemas = conn.execute(
            text(
                "SELECT table_schema, count(*) FROM information_schema.tables "
                "WHERE table_schema IN ('raw_data', 'clean_data') GROUP BY 1 ORDER BY 1"
            )
        ).all()
    assert schemas == [("clean_data", 6), ("raw_data", 4)]
    assert _counts(shared_stores) == (1, 500)
