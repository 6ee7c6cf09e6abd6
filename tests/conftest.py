"""Shared fixtures: one real PostgreSQL server per test session, fresh databases per test.

The server is the same :class:`LocalPostgres` that ``mlops up`` runs. Each test gets its own RAW
and CLEAN databases, cloned from migrated templates (a file copy inside the server: ~20 ms).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from mlops_platform.local.postgres import LocalPostgres, free_port
from mlops_platform.settings import Settings, load_settings
from mlops_platform.storage.engine import make_engine
from mlops_platform.storage.migrate import upgrade

pytest_plugins = ["tests.plugins.mlflow_stack"]

_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    root = tmp_path_factory.mktemp("postgres")
    server = LocalPostgres(root / "data", free_port(), durable=False)
    server.init()
    server.start()
    for store in ("raw", "clean"):
        server.ensure_database(f"template_{store}")
        upgrade(server.url(f"template_{store}"), store)  # type: ignore[arg-type]
    server.ensure_database("template_both")
    upgrade(server.url("template_both"), "raw")
    upgrade(server.url("template_both"), "clean")
    yield server
    server.stop()


@dataclass
class Stores:
    """A test's own RAW and CLEAN databases (the same one when ``shared``)."""

    raw_url: str
    clean_url: str
    raw: Engine
    clean: Engine

    def settings(self, **overrides: object) -> Settings:
        return load_settings(raw_db_url=self.raw_url, clean_db_url=self.clean_url, **overrides)

    def with_model(self, tracking_uri: str, prefix: str, **overrides: object) -> Settings:
        """These stores and a registered model of their own on a shared MLflow server."""
        name = f"{prefix}_{next(_counter)}"
        return self.settings(
            mlflow_tracking_uri=tracking_uri, model_name=name, experiment_name=name, **overrides
        )


def _stores(postgres: LocalPostgres, shared: bool) -> Iterator[Stores]:
    n = next(_counter)
    names = [f"both_{n}"] if shared else [f"raw_{n}", f"clean_{n}"]
    templates = ["template_both"] if shared else ["template_raw", "template_clean"]
    for name, template in zip(names, templates, strict=True):
        postgres.clone_database(template, name)
    raw_url, clean_url = postgres.url(names[0]), postgres.url(names[-1])
    stores = Stores(raw_url, clean_url, make_engine(raw_url), make_engine(clean_url))
    yield stores
    stores.raw.dispose()
    stores.clean.dispose()
    for name in names:
        postgres.drop_database(name)


@pytest.fixture
def stores(postgres: LocalPostgres) -> Iterator[Stores]:
    """RAW and CLEAN in two databases (the default deployment)."""
    yield from _stores(postgres, shared=False)


@pytest.fixture
def shared_stores(postgres: LocalPostgres) -> Iterator[Stores]:
    """RAW and CLEAN sharing one database."""
    yield from _stores(postgres, shared=True)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"
