"""Alembic migrations of both stores, run programmatically (``mlops db upgrade``).

RAW and CLEAN each have their own migration history and their own version table inside their
own schema, so they work whether they live in two databases or share one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from mlops_platform.storage.engine import make_engine
from mlops_platform.storage.tables import CLEAN_SCHEMA, RAW_SCHEMA

Store = Literal["raw", "clean"]
SCHEMAS: dict[Store, str] = {"raw": RAW_SCHEMA, "clean": CLEAN_SCHEMA}
_MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(store: Store) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS / store))
    config.attributes["schema"] = SCHEMAS[store]
    return config


def upgrade_engine(engine: Engine, store: Store, revision: str = "head") -> None:
    config = alembic_config(store)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def upgrade(url: str, store: Store, revision: str = "head") -> None:
    """Bring one store's schema to ``revision``; safe to run again (a no-op when current)."""
    engine = make_engine(url)
    try:
        upgrade_engine(engine, store, revision)
    finally:
        engine.dispose()


def upgrade_all(raw_url: str, clean_url: str) -> None:
    upgrade(raw_url, "raw")
    upgrade(clean_url, "clean")
