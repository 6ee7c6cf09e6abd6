"""Real Airflow 3.3 for the DAG tests: metadata in the session's PostgreSQL, DAGs from ``dags/``.

Airflow reads its configuration once, when it is first imported, so the ``AIRFLOW__*`` variables
are set here before that import, and Airflow is imported only inside fixtures and tests (never at
module level: collecting this folder must not configure Airflow for the rest of the session).
The ``airflow`` database is created and migrated (``initdb``) once per session.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select

from mlops_platform.local.postgres import LocalPostgres

DAGS = Path(__file__).parents[2] / "dags"
AIRFLOW_DB = "airflow"  # database, owner and password


@pytest.fixture(scope="session")
def airflow_db(postgres: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Airflow configured by environment and its metadata database migrated, once a session."""
    assert "airflow" not in sys.modules, "airflow was imported before its environment was set"
    postgres.ensure_database(AIRFLOW_DB, AIRFLOW_DB, AIRFLOW_DB)
    home = tmp_path_factory.mktemp("airflow_home")
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url(AIRFLOW_DB, AIRFLOW_DB, AIRFLOW_DB),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        }.items():
            env.setenv(name, value)
        env.delenv("MLOPS_DATA_SCHEDULE", raising=False)  # the DAGs' own default is under test
        from airflow.utils.db import initdb

        initdb()
        yield
        from airflow.settings import dispose_orm

        dispose_orm()


@pytest.fixture(scope="session")
def dagbag(airflow_db: None) -> Any:
    """``dags/`` parsed by Airflow's own DagBag (what the dag-processor does)."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


@pytest.fixture
def fresh_assets(airflow_db: None) -> None:
    """No asset events or queued asset-triggered runs left by an earlier test (one DB a session)."""
    from airflow.models.asset import AssetDagRunQueue, AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        session.execute(delete(AssetDagRunQueue))
        session.execute(delete(AssetEvent))


def asset_events(name: str) -> list[tuple[str, dict[str, Any]]]:
    """``(source dag, extra)`` of every event recorded for the asset, oldest first."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.source_dag_id, AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == name)
            .order_by(AssetEvent.id)
        ).all()
    return [(dag_id, extra) for dag_id, extra in rows]


def queued_runs() -> list[str]:
    """DAGs waiting to be started by asset events."""
    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session

    with create_session() as session:
        return sorted(session.scalars(select(AssetDagRunQueue.target_dag_id)))


def task_states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def xcom(run: Any, task_id: str) -> Any:
    """What a task of this run returned."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.scalar(
            select(XComModel.value).where(
                XComModel.dag_id == run.dag_id,
                XComModel.run_id == run.run_id,
                XComModel.task_id == task_id,
                XComModel.key == "return_value",
            )
        )
