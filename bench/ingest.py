"""Data path benchmark: our ingest and clean against the original system's, same rows, same server.

The original system loaded each batch into a pandas DataFrame and inserted it with psycopg2's
``execute_values`` (page size 1500); its clean step read RAW back into pandas, dropped rows with a
missing value and duplicate rows, cast the types and wrote CLEAN with ``execute_values`` again.
Ours stores the batch with COPY (``store_batch``) and cleans it column-wise (``clean_pending``:
read RAW with COPY, every rule of ``schema.py``, repairs, rejections with reasons, duplicates,
split, COPY into CLEAN). Both write the same 200,000 simulator rows, received as JSON, into one
local PostgreSQL server; each run does our ingest and clean, then the original's, and medians are
reported. ``pipeline_cpu_s`` is the CPU our ingest and clean cost this process and the server
together (what the machine's cores must fit). Prints ``key=value`` lines, ``pipeline_speedup``
last.

    python bench/ingest.py [--rows 200000] [--runs 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil
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

# The original CLEAN table: the 12 fields typed, nothing else (no keys, no links to RAW).
BASELINE_CLEAN = (
    "CREATE TABLE baseline_clean (brokered_by text, status text, price double precision, "
    "bed smallint, bath smallint, acre_lot double precision, street text, city text, "
    "state text, zip_code text, house_size double precision, prev_sold_date date)"
)
NUMBERS = ("price", "bed", "bath", "acre_lot", "house_size")
# What the server runs with, for both sides (printed, and stated in docs/BENCHMARKS.md).
SETTINGS = ("fsync", "synchronous_commit", "full_page_writes", "shared_buffers", "wal_buffers")


def baseline(conninfo: str, records: list[dict]) -> float:
    """The original ingest: DataFrame → execute_values(page_size=1500) → commit. Seconds."""
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


def baseline_clean(conninfo: str) -> tuple[float, int]:
    """The original clean: RAW into pandas (a cursor's rows, the fastest of the usual ways),
    drop NA and duplicates, cast the types (rows whose numbers or dates do not cast are dropped
    too), execute_values(page_size=1500) into the typed table, commit. Seconds, rows written."""
    with psycopg2.connect(conninfo) as conn, conn.cursor() as cursor:
        cursor.execute("TRUNCATE baseline_clean")
        conn.commit()
        start = time.perf_counter()
        cursor.execute(f"SELECT {', '.join(FIELDS)} FROM baseline_raw")
        frame = pd.DataFrame(cursor.fetchall(), columns=list(FIELDS))
        frame = frame.dropna().drop_duplicates()
        for name in NUMBERS:
            frame[name] = pd.to_numeric(frame[name], errors="coerce")
        sold = pd.to_datetime(frame["prev_sold_date"], errors="coerce", format="ISO8601")
        frame["prev_sold_date"] = sold.dt.date
        frame = frame.dropna().astype({"bed": "int64", "bath": "int64"})
        execute_values(
            cursor,
            f"INSERT INTO baseline_clean ({', '.join(FIELDS)}) VALUES %s",
            frame.astype(object).values.tolist(),
            page_size=1500,
        )
        conn.commit()
        return time.perf_counter() - start, len(frame)


def cpu_seconds(data_dir: Path) -> float:
    """CPU time so far of this process and of the server (its postmaster and every child)."""
    ours = resource.getrusage(resource.RUSAGE_SELF)
    postmaster = psutil.Process(int((data_dir / "postmaster.pid").read_text().split()[0]))
    server = 0.0
    for process in [postmaster, *postmaster.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:  # a backend that just ended
            continue
        server += times.user + times.system
    return ours.ru_utime + ours.ru_stime + server


def ours(engine, body: str, data_dir: Path) -> tuple[float, float]:
    """Ours: hash the payload as received, then store_batch (one transaction, COPY). Seconds of
    wall and of CPU (this process and the server)."""
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE raw_data.listings, raw_data.batches"))
    batch = parse_batch(body, "bench", 1, "Wednesday")
    cpu = cpu_seconds(data_dir)
    start = time.perf_counter()
    hashlib.sha256(body.encode()).hexdigest()  # the client does this on receipt
    result = store_batch(engine, batch)
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds(data_dir) - cpu
    assert result.stored
    assert result.rows == len(batch.records)
    return elapsed, cpu


def ours_clean(raw, clean, data_dir: Path) -> tuple[float, float]:
    """Ours: clean_pending of the batch just stored, into an empty CLEAN. Seconds of wall and of
    CPU (this process and the server)."""
    with clean.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE clean_data.listings, clean_data.rejected, clean_data.repairs, "
                "clean_data.cleaned_batches"
            )
        )
    cpu = cpu_seconds(data_dir)
    start = time.perf_counter()
    result = clean_pending(raw, clean, test_fraction=0.2)
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds(data_dir) - cpu
    assert result.cleaned + result.rejected == result.rows_read > 0
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    records = generate_batch(SimulatorConfig(batch_size=args.rows), 1, "Wednesday", 1)
    body = json.dumps({"group_number": 1, "day": "Wednesday", "batch_number": 1, "data": records})
    received = parse_batch(body, "bench", 1, "Wednesday").records  # as the client hands them
    times: dict[str, list[float]] = {"ingest": [], "clean": [], "base": [], "base_clean": []}
    cpu: list[float] = []  # ours, ingest + clean: this process and the server, both cores
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
                conn.execute(text(BASELINE_CLEAN))
                settings = {name: conn.execute(text(f"SHOW {name}")).scalar() for name in SETTINGS}
            conninfo = server.conninfo("rawdata")
            for _ in range(args.runs):
                ingest, ingest_cpu = ours(raw, body, server.data_dir)
                cleaning, clean_cpu = ours_clean(raw, clean, server.data_dir)
                times["ingest"].append(ingest)
                times["clean"].append(cleaning)
                cpu.append(ingest_cpu + clean_cpu)
                times["base"].append(baseline(conninfo, received))
                seconds, written = baseline_clean(conninfo)
                times["base_clean"].append(seconds)
            raw.dispose()
            clean.dispose()
        finally:
            server.stop()

    rows = args.rows
    median = {name: statistics.median(values) for name, values in times.items()}
    ours_pipeline = statistics.median(map(sum, zip(times["ingest"], times["clean"], strict=True)))
    base_pipeline = statistics.median(
        map(sum, zip(times["base"], times["base_clean"], strict=True))
    )
    print(f"rows={rows}")
    print(f"runs={args.runs}")
    print("server=" + ",".join(f"{name}:{value}" for name, value in settings.items()))
    print(f"ours_rows_per_s={rows / median['ingest']:.0f}")
    print(f"baseline_rows_per_s={rows / median['base']:.0f}")
    print(f"speedup={median['base'] / median['ingest']:.2f}")
    print(f"clean_rows_per_s={rows / median['clean']:.0f}")
    print(f"original_clean_rows_per_s={rows / median['base_clean']:.0f}")
    print(f"original_clean_rows_written={written}")
    print(f"clean_speedup={median['base_clean'] / median['clean']:.2f}")
    print(f"pipeline_rows_per_s={rows / ours_pipeline:.0f}")
    print(f"original_pipeline_rows_per_s={rows / base_pipeline:.0f}")
    print(f"pipeline_cpu_s={statistics.median(cpu):.2f}")
    print(f"pipeline_speedup={base_pipeline / ours_pipeline:.2f}")


if __name__ == "__main__":
    main()
