"""Cleaning on real PostgreSQL: every RAW row lands once, with reasons, incrementally."""

from __future__ import annotations

from collections import Counter
from datetime import date

from sqlalchemy import select, text

from mlops_platform.datasource.client import Batch
from mlops_platform.datasource.simulator import (
    DIRTY_KINDS,
    DUPLICATE,
    SimulatorConfig,
    generate_labelled_batch,
)
from mlops_platform.pipelines.clean import (
    IDENTITY_FIELDS,
    RawRow,
    clean,
    clean_pending,
    clean_rows,
    listing_identity,
    split_of,
)
from mlops_platform.pipelines.ingest import store_batch
from mlops_platform.schema import FIELDS, Listing
from mlops_platform.storage.tables import clean_listings, raw_listings, rejected
from tests.conftest import Stores
from tests.support import received

# A high dirty rate so every kind shows up in a small batch.
CONFIG = SimulatorConfig(batches=6, batch_size=600, seed=21, dirty_rate=0.3)
KIND_FIELDS = {
    "negative_price": {"price"},
    "absurd_price": {"price"},
    "missing_price": {"price"},
    "absurd_bed": {"bed"},
    "negative_bath": {"bath"},
    "negative_house_size": {"house_size"},
    "absurd_house_size": {"house_size"},
    "negative_acre_lot": {"acre_lot"},
    "bad_zip": {"zip_code"},
    "unknown_state": {"state"},
    "future_sold_date": {"prev_sold_date"},
    "bad_date": {"prev_sold_date"},
    "bad_status": {"status"},
    "missing_city": {"city"},
    "not_a_number": {"price", "bed", "bath", "house_size", "acre_lot"},
}


def _labelled(number: int) -> tuple[Batch, list[str | None]]:
    records, labels = generate_labelled_batch(CONFIG, 1, "Wednesday", number)
    return received(records, number), labels


def _ingest(stores: Stores, *numbers: int) -> dict[int, tuple[int, list[str | None]]]:
    out = {}
    for number in numbers:
        batch, labels = _labelled(number)
        out[number] = (store_batch(stores.raw, batch).batch_id, labels)
    return out


def _clean(stores: Stores):
    return clean_pending(stores.raw, stores.clean, test_fraction=0.2)


def _outcomes(stores: Stores, batch_id: int) -> dict[int, tuple[str, str]]:
    """row_number → ('clean', split) or (rule, reason)."""
    with stores.clean.connect() as conn:
        kept = conn.execute(
            select(clean_listings.c.row_number, clean_listings.c.split).where(
                clean_listings.c.batch_id == batch_id
            )
        ).all()
        dropped = conn.execute(
            select(rejected.c.row_number, rejected.c.rule, rejected.c.reason).where(
                rejected.c.batch_id == batch_id
            )
        ).all()
    outcomes = {n: ("clean", split) for n, split in kept}
    assert not outcomes.keys() & {n for n, *_ in dropped}, "a row is both clean and rejected"
    outcomes.update({n: (rule, reason) for n, rule, reason in dropped})
    return outcomes


def test_each_dirty_kind_is_kept_in_raw_and_rejected_with_its_reason(stores: Stores) -> None:
    ((batch_id, labels),) = _ingest(stores, 1).values()
    result = _clean(stores)
    outcomes = _outcomes(stores, batch_id)
    assert sorted(outcomes) == list(range(len(labels)))  # every RAW row landed exactly once
    assert result.rows_read == len(labels) == result.cleaned + result.rejected
    seen = Counter()
    for number, label in enumerate(labels):
        rule, reason = outcomes[number]
        if label is None and rule == "duplicate":  # its copy came first and was kept
            original = int(reason.rsplit("row ", 1)[1])
            assert labels[original] == DUPLICATE, reason
        elif label is None:
            assert rule == "clean", f"valid row {number} rejected: {reason}"
        elif label == DUPLICATE:  # the copy may come before its original: one of them is kept
            assert rule in {"clean", "duplicate"}
        else:
            field = rule.split(":")[0]
            assert field in KIND_FIELDS[label], f"{label} rejected for {rule}: {reason}"
            assert reason.startswith(f"{field}: ")
        seen[label] += 1
    assert set(DIRTY_KINDS) <= set(seen), f"kinds missing from the sample: {seen}"
    duplicates = [n for n, (rule, _) in outcomes.items() if rule == "duplicate"]
    assert len(duplicates) == seen[DUPLICATE] > 0
    assert all("exact duplicate of the listing in batch" in outcomes[n][1] for n in duplicates)
    with stores.raw.connect() as conn:  # RAW still holds every dirty row unchanged
        assert conn.execute(
            select(raw_listings.c.row_number).where(raw_listings.c.batch_id == batch_id)
        ).all() == [(n,) for n in range(len(labels))]


def test_rows_repeated_from_an_earlier_batch_are_duplicates(stores: Stores) -> None:
    ingested = _ingest(stores, 1, 2)
    _clean(stores)
    batch_id, labels = ingested[2]
    outcomes = _outcomes(stores, batch_id)
    carried = [
        reason
        for number, (rule, reason) in outcomes.items()
        if rule == "duplicate" and f"batch {ingested[1][0]}," in reason
    ]
    assert carried, "no row of batch 2 was recognised as repeating batch 1"
    assert sum(label == DUPLICATE for label in labels) >= len(carried)


def test_clean_twice_changes_nothing(stores: Stores) -> None:
    _ingest(stores, 1)
    settings = stores.settings()
    first = clean(settings)
    second = clean(settings)
    assert first["cleaned"] > 0
    assert second == {
        "batches": [],
        "rows_read": 0,
        "cleaned": 0,
        "rejected": 0,
        "rejected_by_rule": {},
    }


def test_cleaning_reads_only_new_batches(stores: Stores) -> None:
    ingested = _ingest(stores, 1, 2, 3)
    assert _clean(stores).rows_read == 3 * CONFIG.batch_size
    before = _outcomes(stores, ingested[1][0])
    with stores.raw.begin() as conn:  # rewrite old RAW rows: a re-read would change CLEAN
        conn.execute(text("UPDATE raw_data.listings SET price = '-1' WHERE batch_id <= 3"))
    ((new_id, _),) = _ingest(stores, 4).values()
    result = _clean(stores)
    assert result.batches == [new_id]
    assert result.rows_read == CONFIG.batch_size
    assert _outcomes(stores, ingested[1][0]) == before
    with stores.raw.connect() as conn:
        plan = (
            conn.execute(
                text(
                    "EXPLAIN SELECT * FROM raw_data.listings WHERE batch_id = 4 ORDER BY row_number"
                )
            )
            .scalars()
            .all()
        )
    assert any("Index Scan" in line for line in plan), plan


def test_split_is_a_pure_function_of_the_row(stores: Stores, shared_stores: Stores) -> None:
    for target in (stores, shared_stores):
        _ingest(target, 1)
        _clean(target)
    queries = []
    for target in (stores, shared_stores):
        with target.clean.connect() as conn:
            rows = conn.execute(select(clean_listings)).mappings().all()
        queries.append({row["row_key"]: row["split"] for row in rows})
        for row in rows:
            listing = Listing.model_construct(**{f: row[f] for f in IDENTITY_FIELDS})
            assert row["split"] == split_of(listing_identity(listing), 0.2)
    assert queries[0] == queries[1]
    share = Counter(queries[0].values())["test"] / len(queries[0])
    assert 0.12 < share < 0.28


def test_clean_rows_are_typed_and_normalised(stores: Stores) -> None:
    _ingest(stores, 1)
    _clean(stores)
    with stores.clean.connect() as conn:
        rows = conn.execute(select(*(clean_listings.c[f] for f in FIELDS))).mappings().all()
    assert all(len(r["zip_code"]) == 5 and r["zip_code"].isdigit() for r in rows)
    assert all(r["price"] > 0 for r in rows)
    assert all(r["status"] in {"for_sale", "ready_to_build", "sold"} for r in rows)
    assert all(r["city"] == " ".join(r["city"].split()) for r in rows)
    assert {len(r["state"]) > 2 for r in rows} == {True}  # codes became names


def test_a_relisted_house_stays_on_one_side_of_the_split() -> None:
    """The same house listed again — another price, status, broker and sale date — is the same
    identity, so it is in train both times or in test both times; another house may differ."""
    house = {
        "brokered_by": "1",
        "status": "for_sale",
        "price": 300000,
        "bed": 3,
        "bath": 2,
        "acre_lot": 0.2,
        "street": "12345",
        "city": "Austin",
        "state": "TX",
        "zip_code": "78701",
        "house_size": 1500,
        "prev_sold_date": "2015-01-01",
    }
    relisted = {
        **house,
        "brokered_by": "2",
        "status": "sold",
        "price": 345000,
        "prev_sold_date": "2021-05-05",
    }
    splits = set()
    for street in range(200):  # 200 houses, each listed twice
        rows = [
            RawRow(1, 2 * street, {**house, "street": str(street)}),
            RawRow(1, 2 * street + 1, {**relisted, "street": str(street)}),
        ]
        accepted, rejected = clean_rows(rows, as_of=date(2026, 1, 1), test_fraction=0.2)
        assert not rejected
        assert len({row.row_key for row in accepted}) == 2, "two listings, not duplicates"
        assert len({row.split for row in accepted}) == 1, f"house {street} in train and test"
        splits.add(accepted[0].split)
    assert splits == {"train", "test"}
