"""CLEAN store: model_history, one row per training decision.

Revision ID: clean_0002
Revises: clean_0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "clean_0002"
down_revision = "clean_0001"
branch_labels = None
depends_on = None

SCHEMA = "clean_data"


def upgrade() -> None:
    op.create_table(
        "model_history",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "decided_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("data_version", sa.Text, nullable=False),
        sa.Column("max_batch_id", sa.BigInteger, nullable=False),
        sa.Column("reference_rows", sa.Integer, nullable=False),
        sa.Column("new_rows", sa.Integer, nullable=False),
        sa.Column("retrain", sa.Boolean, nullable=False),
        sa.Column("decision_reasons", JSONB, nullable=False),
        sa.Column("drift", JSONB, nullable=False),
        sa.Column("drifted_features", JSONB, nullable=False),
        sa.Column("production_version", sa.Text),
        sa.Column("production_metrics", JSONB),
        sa.Column("candidate_version", sa.Text),
        sa.Column("candidate_run_id", sa.Text),
        sa.Column("candidate_family", sa.Text),
        sa.Column("candidate_metrics", JSONB),
        sa.Column("validation_metrics", JSONB),
        sa.Column("eval_rows", sa.Integer),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("promoted", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("shap_uri", sa.Text),
        sa.UniqueConstraint("data_version", name="model_history_data_version_key"),
        sa.CheckConstraint(
            "outcome IN ('skipped', 'promoted', 'rejected')", name="model_history_outcome_check"
        ),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("model_history", schema=SCHEMA)
