"""CLEAN store: typed listings, rejected rows, and which RAW batches were cleaned.

Revision ID: clean_0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "clean_0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "clean_data"


def upgrade() -> None:
    op.create_table(
        "cleaned_batches",
        sa.Column("batch_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("rows_read", sa.Integer, nullable=False),
        sa.Column("cleaned", sa.Integer, nullable=False),
        sa.Column("rejected", sa.Integer, nullable=False),
        sa.Column(
            "cleaned_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=SCHEMA,
    )
    op.create_table(
        "listings",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("batch_id", sa.BigInteger, nullable=False),
        sa.Column("row_number", sa.Integer, nullable=False),
        sa.Column("brokered_by", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("price", sa.Double, nullable=False),
        sa.Column("bed", sa.SmallInteger),
        sa.Column("bath", sa.SmallInteger),
        sa.Column("acre_lot", sa.Double),
        sa.Column("street", sa.Text),
        sa.Column("city", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("zip_code", sa.Text, nullable=False),
        sa.Column("house_size", sa.Double),
        sa.Column("prev_sold_date", sa.Date),
        sa.Column("row_key", sa.Text, nullable=False),
        sa.Column("split", sa.Text, nullable=False),
        sa.Column(
            "cleaned_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.UniqueConstraint("batch_id", "row_number", name="listings_raw_row_key"),
        sa.UniqueConstraint("row_key", name="listings_row_key_key"),
        sa.CheckConstraint("split IN ('train', 'test')", name="listings_split_check"),
        sa.CheckConstraint("price > 0", name="listings_price_check"),
        schema=SCHEMA,
    )
    op.create_table(
        "rejected",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("batch_id", sa.BigInteger, nullable=False),
        sa.Column("row_number", sa.Integer, nullable=False),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column(
            "rejected_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.UniqueConstraint("batch_id", "row_number", name="rejected_raw_row_key"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("rejected", schema=SCHEMA)
    op.drop_table("listings", schema=SCHEMA)
    op.drop_table("cleaned_batches", schema=SCHEMA)
