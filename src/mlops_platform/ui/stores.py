"""What the UI reads from RAW and CLEAN: read-only sessions, one query per question.

Every function takes an engine and returns a DataFrame, so pages stay thin and tests call these
directly. The sessions are read-only at the server (``default_transaction_read_only``), so even
with an owner's login locally the UI cannot change a row; on Kubernetes it logs in as `reader`.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Engine, create_engine, func, select

from mlops_platform.storage.engine import normalise_url
from mlops_platform.storage.tables import (
    batches,
    cleaned_batches,
    inference_logs,
    rejected,
    repairs,
)
from mlops_platform.storage.tables import model_history as history_table

HISTORY_COLUMNS = [
    "decided_at",
    "data_version",
    "max_batch_id",
    "reference_rows",
    "new_rows",
    "retrain",
    "decision_reasons",
    "drift",
    "drifted_features",
    "production_version",
    "production_metrics",
    "candidate_version",
    "candidate_run_id",
    "candidate_family",
    "candidate_metrics",
    "outcome",
    "promoted",
    "reason",
    "shap_uri",
]


def utc(values: pd.Series) -> pd.Series:
    """Timestamps as naive UTC: Streamlit and Altair show them as they are, without a zone
    conversion (columns say "(UTC)")."""
    return pd.to_datetime(values, utc=True).dt.tz_localize(None)


def read_only_engine(url: str) -> Engine:
    """A small pool whose sessions refuse writes."""
    return create_engine(
        normalise_url(url),
        pool_pre_ping=True,
        pool_size=2,
        max_overflow=2,
        connect_args={"options": "-c default_transaction_read_only=on"},
    )


def model_history(clean: Engine) -> pd.DataFrame:
    """Every training decision, oldest first (empty frame with the columns when none yet)."""
    query = select(*(history_table.c[name] for name in HISTORY_COLUMNS)).order_by(
        history_table.c.id
    )
    with clean.connect() as conn:
        rows = conn.execute(query).mappings().all()
    frame = pd.DataFrame([dict(r) for r in rows], columns=HISTORY_COLUMNS)
    frame["decided_at"] = utc(frame["decided_at"])
    return frame


REPAIR_EXAMPLE_COLUMNS = ["batch_id", "row_number", "field", "rule", "original", "reason"]


def batch_summary(raw: Engine, clean: Engine) -> pd.DataFrame:
    """One row per batch received: rows received, cleaned (of which repaired) and rejected (RAW
    and CLEAN joined here, since they may be two databases)."""
    with raw.connect() as conn:
        received = pd.DataFrame(
            conn.execute(
                select(
                    batches.c.id.label("batch_id"),
                    batches.c.batch_number,
                    batches.c.group_number,
                    batches.c.day,
                    batches.c.received_at,
                    batches.c.row_count.label("received"),
                ).order_by(batches.c.id)
            )
            .mappings()
            .all(),
            columns=["batch_id", "batch_number", "group_number", "day", "received_at", "received"],
        )
    with clean.connect() as conn:
        cleaned = pd.DataFrame(
            conn.execute(
                select(
                    cleaned_batches.c.batch_id,
                    cleaned_batches.c.cleaned,
                    cleaned_batches.c.repaired,
                    cleaned_batches.c.rejected,
                )
            )
            .mappings()
            .all(),
            columns=["batch_id", "cleaned", "repaired", "rejected"],
        )
    received["received_at"] = utc(received["received_at"])
    frame = received.merge(cleaned, on="batch_id", how="left")
    counts = ["cleaned", "repaired", "rejected"]
    frame[counts] = frame[counts].astype("Int64")
    return frame


def rejections(clean: Engine) -> pd.DataFrame:
    """Rejected rows per batch and rule (``field:kind``), most frequent first."""
    query = (
        select(rejected.c.batch_id, rejected.c.rule, func.count().label("rows"))
        .group_by(rejected.c.batch_id, rejected.c.rule)
        .order_by(rejected.c.batch_id, func.count().desc())
    )
    with clean.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=["batch_id", "rule", "rows"])


def repairs_by_rule(clean: Engine) -> pd.DataFrame:
    """Fields set to null per batch and rule (``field:kind``), most frequent first. A rule names
    one field, so its count is also the rows it touched."""
    query = (
        select(repairs.c.batch_id, repairs.c.rule, func.count().label("rows"))
        .group_by(repairs.c.batch_id, repairs.c.rule)
        .order_by(repairs.c.batch_id, func.count().desc())
    )
    with clean.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=["batch_id", "rule", "rows"])


def repair_examples(clean: Engine, per_rule: int = 3) -> pd.DataFrame:
    """The newest few repairs of each rule, with the text RAW received: what a source sends that
    the schema cannot read, to show rather than count."""
    rank = (
        func.row_number()
        .over(
            partition_by=repairs.c.rule,
            order_by=(repairs.c.batch_id.desc(), repairs.c.row_number),
        )
        .label("rank")
    )
    ranked = select(*(repairs.c[name] for name in REPAIR_EXAMPLE_COLUMNS), rank).subquery()
    query = (
        select(*(ranked.c[name] for name in REPAIR_EXAMPLE_COLUMNS))
        .where(ranked.c.rank <= per_rule)
        .order_by(ranked.c.rule, ranked.c.batch_id.desc(), ranked.c.row_number)
    )
    with clean.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=REPAIR_EXAMPLE_COLUMNS)


def recent_inferences(raw: Engine, limit: int = 5000) -> pd.DataFrame:
    """The newest served predictions, oldest first: time, model version, latency, price."""
    query = (
        select(
            inference_logs.c.logged_at,
            inference_logs.c.model_version,
            inference_logs.c.latency_ms,
            inference_logs.c.output,
        )
        .order_by(inference_logs.c.id.desc())
        .limit(limit)
    )
    with raw.connect() as conn:
        rows = conn.execute(query).mappings().all()
    frame = pd.DataFrame(
        [dict(r) for r in rows], columns=["logged_at", "model_version", "latency_ms", "output"]
    )
    frame["logged_at"] = utc(frame["logged_at"])
    prices = frame.pop("output").map(
        lambda out: out.get("price") if isinstance(out, dict) else None
    )
    frame["prediction"] = pd.to_numeric(prices, errors="coerce")  # output is {"price": ...}
    return frame.iloc[::-1].reset_index(drop=True)
