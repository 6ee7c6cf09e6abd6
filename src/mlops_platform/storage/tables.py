"""Table definitions of the RAW (``raw_data``) and CLEAN (``clean_data``) stores.

These mirror the Alembic migrations, which are the source of truth for the database; code uses
these objects to build queries. RAW keeps text exactly as received; CLEAN keeps typed rows.
A RAW row is named by ``(batch_id, row_number)``; CLEAN rows carry that pair as their link.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from mlops_platform.schema import FIELDS

RAW_SCHEMA = "raw_data"
CLEAN_SCHEMA = "clean_data"

raw_metadata = MetaData(schema=RAW_SCHEMA)
clean_metadata = MetaData(schema=CLEAN_SCHEMA)

batches = Table(
    "batches",
    raw_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("source", Text, nullable=False),
    Column("group_number", Integer, nullable=False),
    Column("day", Text, nullable=False),
    Column("batch_number", Integer, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("row_count", Integer, nullable=False),
    Column("sha256", Text, nullable=False, unique=True),
)

raw_listings = Table(
    "listings",
    raw_metadata,
    Column("batch_id", BigInteger, primary_key=True, autoincrement=False),
    Column("row_number", Integer, primary_key=True, autoincrement=False),
    *(Column(name, Text) for name in FIELDS),
    Column("extra", Text, comment="JSON of keys outside the 12 fields, as received"),
    Column("row_hash", Text, nullable=False, comment="sha256 of the row as stored"),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

inference_logs = Table(
    "inference_logs",
    raw_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("logged_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("model_name", Text, nullable=False),
    Column("model_version", Text, nullable=False),
    Column("run_id", Text),
    Column("input", JSONB, nullable=False),
    Column("output", JSONB, nullable=False),
    Column("latency_ms", Double, nullable=False),
)

cleaned_batches = Table(
    "cleaned_batches",
    clean_metadata,
    Column("batch_id", BigInteger, primary_key=True, autoincrement=False),
    Column("rows_read", Integer, nullable=False),
    Column("cleaned", Integer, nullable=False),
    Column("rejected", Integer, nullable=False),
    Column("cleaned_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column(
        "repaired",
        Integer,
        nullable=False,
        server_default="0",
        comment="rows kept with optional fields set to null (see repairs)",
    ),
)

clean_listings = Table(
    "listings",
    clean_metadata,
    # Named by its RAW row; no surrogate id (one index less to fill on every COPY, clean_0005).
    Column("batch_id", BigInteger, primary_key=True, autoincrement=False),
    Column("row_number", Integer, primary_key=True, autoincrement=False),
    Column("brokered_by", Text),
    Column("status", Text, nullable=False),
    Column("price", Double, nullable=False),
    Column("bed", SmallInteger),
    Column("bath", SmallInteger),
    Column("acre_lot", Double),
    Column("street", Text),
    Column("city", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("zip_code", Text, nullable=False),
    Column("house_size", Double),
    Column("prev_sold_date", Date),
    # The first 128 bits of the row's SHA-256 (clean.row_key): 16 bytes to compare, not 64 chars.
    Column("row_key", Uuid(as_uuid=False), nullable=False, unique=True),
    Column("split", Text, nullable=False),
    Column("cleaned_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

rejected = Table(
    "rejected",
    clean_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("batch_id", BigInteger, nullable=False),
    Column("row_number", Integer, nullable=False),
    Column("rule", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("rejected_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# An optional field of a kept row that failed its rule and was set to null: one row per field,
# with the text RAW received. Rows of a batch are written with its listings (clean_0004).
repairs = Table(
    "repairs",
    clean_metadata,
    Column("batch_id", BigInteger, primary_key=True, autoincrement=False),
    Column("row_number", Integer, primary_key=True, autoincrement=False),
    Column("field", Text, primary_key=True),
    Column("rule", Text, nullable=False),
    Column("original", Text, nullable=False, comment="the value as received in RAW"),
    Column("reason", Text, nullable=False),
    Column("repaired_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

model_history = Table(
    "model_history",
    clean_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("decided_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("data_version", Text, nullable=False, unique=True),
    Column("max_batch_id", BigInteger, nullable=False),
    Column("reference_rows", Integer, nullable=False),
    Column("new_rows", Integer, nullable=False),
    Column("retrain", Boolean, nullable=False),
    Column("decision_reasons", JSONB, nullable=False),
    Column("drift", JSONB, nullable=False),
    Column("drifted_features", JSONB, nullable=False),
    Column("production_version", Text),
    Column("production_metrics", JSONB),
    Column("candidate_version", Text),
    Column("candidate_run_id", Text),
    Column("candidate_family", Text),
    Column("candidate_metrics", JSONB),
    Column("validation_metrics", JSONB),
    Column("eval_rows", Integer),
    Column("outcome", Text, nullable=False),
    Column("promoted", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("shap_uri", Text),
)
