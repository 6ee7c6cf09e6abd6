"""CLEAN store: the `superseded` outcome (a run for data older than data already decided).

Revision ID: clean_0003
Revises: clean_0002
Create Date: 2026-12-01
"""

from alembic import op

revision = "clean_0003"
down_revision = "clean_0002"
branch_labels = None
depends_on = None

SCHEMA = "clean_data"
CHECK = "model_history_outcome_check"


def upgrade() -> None:
    op.drop_constraint(CHECK, "model_history", schema=SCHEMA, type_="check")
    op.create_check_constraint(
        CHECK,
        "model_history",
        "outcome IN ('skipped', 'promoted', 'rejected', 'superseded')",
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.execute(f"DELETE FROM {SCHEMA}.model_history WHERE outcome = 'superseded'")
    op.drop_constraint(CHECK, "model_history", schema=SCHEMA, type_="check")
    op.create_check_constraint(
        CHECK, "model_history", "outcome IN ('skipped', 'promoted', 'rejected')", schema=SCHEMA
    )
