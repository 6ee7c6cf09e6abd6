"""Ingest benchmark: our COPY path against the original system's insert, same batch, same server.

The original system loaded each batch into a pandas DataFrame and inserted it with psycopg2's
``execute_values`` (page size 1500). Both ways write the same 200,000 simulator rows, received as
JSON, into one local PostgreSQL server; runs alternate and medians are reported. Prints
``key=value`` lines, ``speedup`` last.

    python bench/ingest.py [--rows 200000] [--runs 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import psycopg2
from psycopg2.extras import execute_values
from sqlalchemy import text

from mlops_platform.datasource.client import parse_batch
from mlops_platform.datasource.simulator import SimulatorConfig, generate_batch
from mlops_platform.local.postgres import LocalPostgres, free_port
from mlops_platform.pipelines.clean import clean_pending
from mlops_platform.pipelines.ingest import store_batch
from mlops_platform.schema import FIELDS
from mlops_platform.storage.engine import make_engine
from mlops_platform.storage.migrate import upgrade_all


def baseline(conninfo: str, records: list[dict]) -> float:
    """The original way: DataFrame → execute_values(page_size=1500) → commit. Seconds."""
    with psycopg2.connect(conninfo) as conn, conn.cursor() as cursor:
        cursor.execute("TRUNCATE baseline_raw")
        conn.commit()
        start = time.perf_counter()
        frame = pd.DataFrame(records, columns=list(FIELDS))
        execute_values(
            cursor,
            f"INSERT INTO baseline_raw ({', '.join(FIELDS)}) VALUES %s",
            frame.astype(object).where(frame.notna(), None).values.tolist(),
            page_size=1500,
        )
        conn.commit()
        return time.perf_counter() - start


def ours(engine, body: str) -> float:
    """Ours: hash the payload as received, then store_batch (one transaction, COPY). Seconds."""
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE raw_data.listings, raw_data.batches"))
    batch = parse_batch(body, "bench", 1, "Wednesday")
    start = time.perf_counter()
    hashlib.sha256(body.encode()).hexdigest()  # the client does this on receipt
    result = store_batch(engine, batch)
    elapsed = time.perf_counter() - start
    assert result.stored
    assert result.rows == len(batch.records)
    return elapsed


def clean_once(raw, clean) -> float:
    with clean.begin() as conn:
        conn.execute(
            text("TRUNCATE clean_data.listings, clean_data.rejected, clean_data.cleaned_batches")
        )
    start = time.perf_counter()
    result = clean_pending(raw, clean, test_fraction=0.2)
    elapsed = time.perf_counter() - start
    assert result.cleaned + result.rejected == result.rows_read
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    records = generate_batch(SimulatorConfig(batch_size=args.rows), 1, "Wednesday", 1)
    body = json.dumps({"group_number": 1, "day": "Wednesday", "batch_number": 1, "data": records})
    received = parse_batch(body, "bench", 1, "Wednesday").records  # as the client hands them
    with tempfile.TemporaryDirectory() as folder:
        server = LocalPostgres(Path(folder) / "data", free_port(), durable=False)
        server.init()
        server.start()
        try:
            server.ensure_database("rawdata")
            server.ensure_database("cleandata")
            upgrade_all(server.url("rawdata"), server.url("cleandata"))
            raw, clean = make_engine(server.url("rawdata")), make_engine(server.url("cleandata"))
            with raw.begin() as conn:
                columns = ", ".join(f"{name} text" for name in FIELDS)
                conn.execute(text(f"CREATE TABLE baseline_raw ({columns})"))
            conninfo = server.conninfo("rawdata")
            ours_s, base_s = [], []
            for _ in range(args.runs):
                ours_s.append(ours(raw, body))
                base_s.append(baseline(conninfo, received))
            clean_s = [clean_once(raw, clean) for _ in range(max(1, args.runs // 2))]
            raw.dispose()
            clean.dispose()
        finally:
            server.stop()

    rows = args.rows
    ours_rate = rows / statistics.median(ours_s)
    base_rate = rows / statistics.median(base_s)
    print(f"rows={rows}")
    print(f"runs={args.runs}")
    print(f"ours_rows_per_s={ours_rate:.0f}")
    print(f"baseline_rows_per_s={base_rate:.0f}")
    print(f"clean_rows_per_s={rows / statistics.median(clean_s):.0f}")
    print(f"speedup={ours_rate / base_rate:.2f}")


if __name__ == "__main__":
    main()
