"""Database engines. URLs may name no driver; we always speak psycopg 3 (COPY, binary protocol)."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url


def normalise_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` URLs get the psycopg 3 driver."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"only PostgreSQL is supported, got {parsed.get_backend_name()!r}")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    """An engine with pre-ping, so a restarted database does not fail the next task."""
    return create_engine(normalise_url(url), pool_pre_ping=True, pool_size=2, max_overflow=4)


def same_database(first: str, second: str) -> bool:
    """True when RAW and CLEAN live in one database (then one transaction could span both)."""
    a, b = make_url(normalise_url(first)), make_url(normalise_url(second))
    return (a.host, a.port, a.database, a.query.get("host")) == (
        b.host,
        b.port,
        b.database,
        b.query.get("host"),
    )
