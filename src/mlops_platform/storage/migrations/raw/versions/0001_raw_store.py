"""RAW store: batches, listings exactly as received, inference logs.

Revision ID: raw_0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "raw_0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "raw_data"
FIELDS = (
    "brokered_by",
    "status",
    "price",
    "bed",
    "bath",
    "acre_lot",
    "street",
    "city",
    "state",
    "zip_code",
    "house_size",
    "prev_sold_date",
)


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("group_number", sa.Integer, nullable=False),
        sa.Column("day", sa.Text, nullable=False),
        sa.Column("batch_number", sa.Integer, nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("row_count", sa.Integer, nullable=False),
        sa.Column("sha256", sa.Text, nullable=False),
        sa.UniqueConstraint("sha256", name="batches_sha256_key"),
        schema=SCHEMA,
    )
    op.create_table(
        "listings",
        # The natural key: no sequence and a single index. No foreign key to batches: the batch
        # row and its listings commit in one transaction, and a per-row FK check halves COPY speed.
        sa.Column("batch_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("row_number", sa.Integer, primary_key=True, autoincrement=False),
        *(sa.Column(name, sa.Text) for name in FIELDS),
        sa.Column("extra", sa.Text, comment="JSON of keys outside the 12 fields, as received"),
        sa.Column("row_hash", sa.Text, nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=SCHEMA,
    )
    op.create_table(
        "inference_logs",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "logged_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("run_id", sa.Text),
        sa.Column("input", JSONB, nullable=False),
        sa.Column("output", JSONB, nullable=False),
        sa.Column("latency_ms", sa.Double, nullable=False),
        schema=SCHEMA,
    )
    op.create_index("inference_logs_logged_at_idx", "inference_logs", ["logged_at"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("inference_logs", schema=SCHEMA)
    op.drop_table("listings", schema=SCHEMA)
    op.drop_table("batches", schema=SCHEMA)
