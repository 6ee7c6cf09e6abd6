"""Cleaning on real PostgreSQL: every RAW row lands once, with reasons, incrementally; failed
optional fields are repaired (nulled, recorded) in the same transaction as the rows."""

from __future__ import annotations

import contextlib
import hashlib
from collections import Counter
from collections.abc import Iterator
from datetime import date

import pytest
from alembic import command
from psycopg.errors import UniqueViolation
from sqlalchemy import Engine, inspect, select, text

from mlops_platform.datasource.client import Batch
from mlops_platform.datasource.simulator import (
    DIRTY_KINDS,
    DUPLICATE,
    SimulatorConfig,
    dirty_fields,
    dirty_outcome,
    generate_labelled_batch,
)
from mlops_platform.local.postgres import LocalPostgres
from mlops_platform.pipelines import clean as clean_module
from mlops_platform.pipelines.clean import (
    IDENTITY_FIELDS,
    RawRow,
    _earlier,
    clean,
    clean_pending,
    clean_rows,
    listing_identity,
    row_key,
    split_of,
)
from mlops_platform.pipelines.ingest import store_batch
from mlops_platform.schema import FIELDS, Listing
from mlops_platform.storage.engine import make_engine
from mlops_platform.storage.migrate import alembic_config, upgrade, upgrade_engine
from mlops_platform.storage.tables import (
    clean_listings,
    cleaned_batches,
    raw_listings,
    rejected,
    repairs,
)
from tests.conftest import Stores
from tests.support import RAW_LISTING, received

# A high dirty rate so every kind shows up in a small batch.
CONFIG = SimulatorConfig(batches=6, batch_size=600, seed=21, dirty_rate=0.3)
GOOD = RAW_LISTING


def _labelled(number: int) -> tuple[Batch, list[str | None]]:
    records, labels = generate_labelled_batch(CONFIG, 1, "Wednesday", number)
    return received(records, number), labels


def _ingest(stores: Stores, *numbers: int) -> dict[int, tuple[int, list[str | None]]]:
    out = {}
    for number in numbers:
        batch, labels = _labelled(number)
        out[number] = (store_batch(stores.raw, batch).batch_id, labels)
    return out


def _ingest_records(stores: Stores, records: list[dict]) -> int:
    """Hand-written records as one RAW batch (as the client would receive them)."""
    return store_batch(stores.raw, received(records, 1)).batch_id


def _repairs(stores: Stores, batch_id: int) -> dict[int, list[tuple[str, str, str, str]]]:
    """row_number → [(field, rule, original, reason)] in field order."""
    order = {name: i for i, name in enumerate(FIELDS)}
    with stores.clean.connect() as conn:
        columns = [
            repairs.c[name] for name in ("row_number", "field", "rule", "original", "reason")
        ]
        rows = conn.execute(select(*columns).where(repairs.c.batch_id == batch_id)).all()
    out: dict[int, list[tuple[str, str, str, str]]] = {}
    for number, *repair in sorted(rows, key=lambda r: (r[0], order[r[1]])):
        out.setdefault(number, []).append(tuple(repair))
    return out


def _tables(stores: Stores) -> dict[str, list[tuple]]:
    """Every CLEAN row of the cleaning tables, without timestamps: equal means unchanged."""
    names = {
        "listings": "batch_id, row_number, row_key, split",
        "rejected": "batch_id, row_number, rule, reason",
        "repairs": "batch_id, row_number, field, rule, original, reason",
        "cleaned_batches": "batch_id, rows_read, cleaned, rejected, repaired",
    }
    with stores.clean.connect() as conn:
        return {
            name: conn.execute(text(f"SELECT {cols} FROM clean_data.{name} ORDER BY 1, 2")).all()
            for name, cols in names.items()
        }


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


def _raw_text(stores: Stores, batch_id: int) -> dict[int, dict[str, str | None]]:
    with stores.raw.connect() as conn:
        rows = conn.execute(
            select(raw_listings.c.row_number, *(raw_listings.c[f] for f in FIELDS)).where(
                raw_listings.c.batch_id == batch_id
            )
        ).all()
    return {number: dict(zip(FIELDS, values, strict=True)) for number, *values in rows}


def test_each_dirty_kind_is_kept_in_raw_and_rejected_or_repaired(stores: Stores) -> None:
    """A dirty row whose corrupted field is required is rejected for that field; one whose
    corrupted field is optional is clean, with that field repaired from RAW's very text."""
    ((batch_id, labels),) = _ingest(stores, 1).values()
    corrupted = dirty_fields(CONFIG, 1, "Wednesday", 1)
    result = _clean(stores)
    outcomes = _outcomes(stores, batch_id)
    repaired = _repairs(stores, batch_id)
    raw_text = _raw_text(stores, batch_id)
    assert sorted(outcomes) == list(range(len(labels)))  # every RAW row landed exactly once
    assert result.rows_read == len(labels) == result.cleaned + result.rejected
    assert result.repaired == len(repaired) > 0
    seen = Counter()
    for number, (label, field) in enumerate(zip(labels, corrupted, strict=True)):
        rule, reason = outcomes[number]
        if label is None and rule == "duplicate":  # its copy came first and was kept
            original = int(reason.rsplit("row ", 1)[1])
            assert labels[original] == DUPLICATE, reason
        elif label is None:
            assert rule == "clean", f"valid row {number} rejected: {reason}"
        elif label == DUPLICATE:  # the copy may come before its original: one of them is kept
            assert rule in {"clean", "duplicate"}
        elif dirty_outcome(field) == "repaired":
            assert rule == "clean", f"{label} on {field} rejected: {reason}"
            ((repaired_field, repair_rule, original, why),) = repaired[number]
            assert (repaired_field, repair_rule.split(":")[0]) == (field, field)
            assert original == raw_text[number][field]
            assert why.startswith(f"{field}: ")
        else:
            assert rule.split(":")[0] == field, f"{label} rejected for {rule}: {reason}"
            assert reason.startswith(f"{field}: ")
        seen[label, dirty_outcome(field) if field else None] += 1
    assert set(repaired) <= {n for n, (rule, _) in outcomes.items() if rule == "clean"}
    assert set(DIRTY_KINDS) <= {label for label, _ in seen}, f"kinds missing: {seen}"
    assert seen["not_a_number", "repaired"], seen
    assert seen["not_a_number", "rejected"], seen
    duplicates = [n for n, (rule, _) in outcomes.items() if rule == "duplicate"]
    assert len(duplicates) == seen[DUPLICATE, None] > 0
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
        "repaired": 0,
        "repaired_by_rule": {},
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


def test_repaired_rows_land_in_listings_with_their_repairs(stores: Stores) -> None:
    records = [
        GOOD,
        {**GOOD, "street": "2", "bed": "three", "prev_sold_date": "2019-13-45"},
        {**GOOD, "street": "3", "bath": "-3"},
        {**GOOD, "street": "4", "prev_sold_date": "6/14/2019"},  # read, not repaired
        {**GOOD, "street": "5", "price": "cheap", "bed": "three"},  # price is required
        {**GOOD, "street": "3", "bath": None},  # row 2 once repaired: a duplicate
    ]
    batch_id = _ingest_records(stores, records)
    result = _clean(stores)
    assert (result.cleaned, result.rejected, result.repaired) == (4, 2, 2)
    assert result.repaired_by_rule == {
        "bath:greater_than_equal": 1,
        "bed:invalid": 1,
        "prev_sold_date:invalid": 1,
    }
    assert result.rejected_by_rule == {"duplicate": 1, "price:invalid": 1}
    outcomes = _outcomes(stores, batch_id)
    assert [outcomes[n][0] for n in range(4)] == ["clean"] * 4
    assert outcomes[4][0] == "price:invalid"
    assert outcomes[5] == (
        "duplicate",
        f"exact duplicate of the listing in batch {batch_id}, row 2",
    )
    repaired = {n: [r[:3] for r in rows] for n, rows in _repairs(stores, batch_id).items()}
    assert repaired == {
        1: [
            ("bed", "bed:invalid", "three"),
            ("prev_sold_date", "prev_sold_date:invalid", "2019-13-45"),
        ],
        2: [("bath", "bath:greater_than_equal", "-3")],
    }
    columns = [clean_listings.c[name] for name in ("row_number", "bed", "bath", "prev_sold_date")]
    with stores.clean.connect() as conn:
        kept = conn.execute(select(*columns).order_by(clean_listings.c.row_number)).all()
        marker = conn.execute(select(cleaned_batches.c.repaired)).scalar_one()
    sold = date(2019, 6, 14)
    assert kept == [(0, 3, 2, sold), (1, None, 2, None), (2, 3, None, sold), (3, 3, 2, sold)]
    assert marker == 2
    before = _tables(stores)
    assert _clean(stores).batches == []  # cleaning again finds nothing, changes nothing
    assert _tables(stores) == before


def test_repairs_are_in_the_batch_transaction(stores: Stores) -> None:
    """A batch whose repairs cannot be written leaves nothing behind: no rows, no marker."""
    batch_id = _ingest_records(stores, [GOOD, {**GOOD, "street": "2", "bed": "three"}])
    with stores.clean.begin() as conn:  # a stray repair the batch's own will collide with
        conn.execute(
            repairs.insert().values(
                batch_id=batch_id, row_number=1, field="bed", rule="x", original="x", reason="x"
            )
        )
    with pytest.raises(UniqueViolation, match="repairs_pkey"):
        _clean(stores)
    tables = _tables(stores)
    assert tables["repairs"] == [(batch_id, 1, "bed", "x", "x", "x")]
    assert tables["listings"] == tables["rejected"] == tables["cleaned_batches"] == []


@contextlib.contextmanager
def _store_at(postgres: LocalPostgres, revision: str) -> Iterator[Engine]:
    """A CLEAN store of its own, migrated up to ``revision`` only (dropped afterwards)."""
    name = f"clean_at_{revision}"
    postgres.ensure_database(name)
    engine = None
    try:
        upgrade(postgres.url(name), "clean", revision)
        engine = make_engine(postgres.url(name))
        yield engine
    finally:
        if engine is not None:
            engine.dispose()
        postgres.drop_database(name)


def _downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config("clean")
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def test_the_repairs_migration_applies_on_a_store_at_clean_0003(postgres: LocalPostgres) -> None:
    """A store cleaned before repairs existed: its batches say 0 repaired, and it goes back."""
    with _store_at(postgres, "clean_0003") as engine:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO clean_data.cleaned_batches (batch_id, rows_read, cleaned, "
                    "rejected) VALUES (1, 10, 9, 1)"
                )
            )
        upgrade_engine(engine, "clean")
        with engine.connect() as conn:
            assert conn.execute(select(cleaned_batches)).mappings().one()["repaired"] == 0
            assert conn.execute(
                text("SELECT version_num FROM clean_data.alembic_version")
            ).all() == [("clean_0005",)]
        assert {c["name"] for c in inspect(engine).get_columns("repairs", "clean_data")} == {
            c.name for c in repairs.columns
        }
        assert inspect(engine).get_pk_constraint("repairs", "clean_data")[
            "constrained_columns"
        ] == ["batch_id", "row_number", "field"]
        _downgrade(engine, "clean_0003")
        assert not inspect(engine).has_table("repairs", "clean_data")


def test_the_listing_keys_migration_keeps_a_stores_duplicates_found(
    postgres: LocalPostgres,
) -> None:
    """A store at clean_0004 (64-digit text keys, a surrogate id): after clean_0005 its listings
    keep their first 32 digits as a uuid, are named by their RAW row, and a new row equal to one
    of them is still found to be its duplicate; the migration goes back to clean_0004."""
    listing = Listing.model_validate(GOOD, context={"as_of": date(2026, 12, 1)})
    _text = lambda value: "\x00" if value is None else str(value)  # noqa: E731 (as clean hashes)
    full_key = hashlib.sha256(
        "\x1f".join(_text(getattr(listing, name)) for name in FIELDS).encode()
    ).hexdigest()
    assert len(full_key) == 64
    assert full_key.startswith(row_key(listing))
    with _store_at(postgres, "clean_0004") as engine:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO clean_data.listings (batch_id, row_number, status, price, city, "
                    "state, zip_code, row_key, split) VALUES (7, 3, 'for_sale', 1, 'c', 's', "
                    "'00001', :key, 'train')"
                ),
                {"key": full_key},
            )
        upgrade_engine(engine, "clean")
        assert "id" not in {
            c["name"] for c in inspect(engine).get_columns("listings", "clean_data")
        }
        assert inspect(engine).get_pk_constraint("listings", "clean_data")[
            "constrained_columns"
        ] == ["batch_id", "row_number"]
        with engine.connect() as conn:
            assert _earlier(conn, [row_key(listing)]) == {row_key(listing): (7, 3)}
        _downgrade(engine, "clean_0004")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id, row_key FROM clean_data.listings")).all() == [
                (1, row_key(listing))
            ]


def test_text_that_csv_or_copy_treat_specially_lands_as_cleaned_in_memory(stores: Stores) -> None:
    """RAW is read back as CSV and CLEAN is written with binary COPY: values holding quotes,
    commas, tabs, newlines, backslashes, the NUL-escape or an empty string come out of CLEAN as
    clean_rows makes them from RAW's text, repairs keep RAW's very text, and the batch's
    duplicate of an earlier batch is found."""
    cities = [
        'O\'Fallon, "Old" Town',
        "Back\\slash City",
        "Tab\tCity",
        "New\nLine\r",
        "\\N",
        "Comma,,City",
        "Ünïcödé  Åre",
        '"',
    ]
    records = [{**GOOD, "street": str(i), "city": city} for i, city in enumerate(cities)]
    records += [
        {**GOOD, "street": "100", "brokered_by": 'a\\b,c\t"d"'},
        {**GOOD, "street": "101", "bed": 'x,"y"\\z\n'},
        {**GOOD, "street": "102", "city": ""},
        {**GOOD, "street": "103", "city": "Nul\u0000City"},
    ]
    first = _ingest_records(stores, [GOOD])
    batch_id = store_batch(stores.raw, received([*records, GOOD], 2)).batch_id
    _clean(stores)
    with stores.raw.connect() as conn:
        received_on = conn.execute(
            text("SELECT received_at FROM raw_data.batches WHERE id = :id"), {"id": batch_id}
        ).scalar_one()
    raw = _raw_text(stores, batch_id)
    accepted, rejections = clean_rows(
        [RawRow(batch_id, number, values) for number, values in sorted(raw.items())],
        as_of=received_on.date(),
        test_fraction=0.2,
    )
    with stores.clean.connect() as conn:
        columns = [clean_listings.c[name] for name in ("batch_id", "row_number", *FIELDS)]
        stored = conn.execute(
            select(*columns, clean_listings.c.row_key, clean_listings.c.split)
            .where(clean_listings.c.batch_id == batch_id)
            .order_by(clean_listings.c.row_number)
        ).all()
    again = len(records)  # GOOD once more: kept in memory, a duplicate of batch `first` in CLEAN
    expected = [row.as_tuple() for row in accepted if row.row_number != again]
    # A uuid reads back with dashes; clean.row_key gives its 32 hex digits.
    assert [(*row[:-2], row[-2].replace("-", ""), row[-1]) for row in stored] == expected
    assert {row.listing.city for row in accepted} >= {
        'O\'Fallon, "Old" Town',
        "Back\\Slash City",
        "Tab City",
        "New Line",
        "\\N",
        "Ünïcödé Åre",
    }
    outcomes = _outcomes(stores, batch_id)
    assert outcomes[again] == (
        "duplicate",
        f"exact duplicate of the listing in batch {first}, row 0",
    )
    assert {(r.row_number, r.rule) for r in rejections} <= {
        (n, rule) for n, (rule, _) in outcomes.items()
    }
    assert _repairs(stores, batch_id)[len(cities) + 1][0][:3] == (
        "bed",
        "bed:invalid",
        'x,"y"\\z\n',
    )


def test_a_batch_cleaned_in_chunks_ends_as_cleaned_at_once(
    stores: Stores, shared_stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big batch goes through in chunks of row numbers; small chunks (duplicates of rows in
    earlier chunks, of earlier batches, repairs and rejections spread over many) leave CLEAN as
    one chunk does."""
    tables = []
    for target, chunk in ((stores, 10**9), (shared_stores, 37)):
        monkeypatch.setattr(clean_module, "_CHUNK_ROWS", chunk)
        _ingest(target, 1, 2)
        result = _clean(target)
        assert result.rows_read == 2 * CONFIG.batch_size
        tables.append(_tables(target))
    assert tables[0] == tables[1]
    rules = {rule for _, _, rule, _ in tables[0]["rejected"]}
    assert "duplicate" in rules
    assert tables[0]["repairs"]
