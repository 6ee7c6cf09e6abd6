"""CLEAN store: repairs, the optional fields of kept rows that were set to null, and how many rows
of each cleaned batch were repaired.

Revision ID: clean_0004
Revises: clean_0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "clean_0004"
down_revision = "clean_0003"
branch_labels = None
depends_on = None

SCHEMA = "clean_data"


def upgrade() -> None:
    op.create_table(
        "repairs",
        sa.Column("batch_id", sa.BigInteger, nullable=False),
        sa.Column("row_number", sa.Integer, nullable=False),
        sa.Column("field", sa.Text, nullable=False),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("original", sa.Text, nullable=False, comment="the value as received in RAW"),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column(
            "repaired_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("batch_id", "row_number", "field", name="repairs_pkey"),
        schema=SCHEMA,
    )
    # Batches cleaned before repairs existed repaired nothing: 0 is their true count.
    op.add_column(
        "cleaned_batches",
        sa.Column(
            "repaired",
            sa.Integer,
            nullable=False,
            server_default="0",
            comment="rows kept with optional fields set to null (see repairs)",
        ),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_column("cleaned_batches", "repaired", schema=SCHEMA)
    op.drop_table("repairs", schema=SCHEMA)
