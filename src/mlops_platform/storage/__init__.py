"""RAW and CLEAN stores: engines, tables and their Alembic migrations."""
