"""Shared Alembic environment: both stores' ``env.py`` call :func:`run`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text


def run() -> None:
    config = context.config
    schema = config.attributes["schema"]
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `mlops db upgrade` (storage.migrate)")
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    context.configure(
        connection=connection,
        version_table="alembic_version",
        version_table_schema=schema,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()
