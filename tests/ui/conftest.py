"""A real platform seeded the way users get one: the simulator served over HTTP, the data and
modeling pipelines run on its batches, the inference API serving the promoted model and logging
predictions. The UI tests (AppTest and the browser) read this stack through MLOPS_* variables."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from mlops_platform.datasource.app import app_from_settings
from mlops_platform.local.postgres import LocalPostgres, free_port
from mlops_platform.pipelines.data import run_data_pipeline
from mlops_platform.pipelines.modeling import run_model_pipeline
from mlops_platform.serving.app import create_app
from mlops_platform.serving.state import EXAMPLE_RECORD
from mlops_platform.settings import Settings
from tests import support
from tests.conftest import _stores
from tests.plugins.mlflow_stack import MlflowServer

# Five batches of 600 rows, drift from the third: a first model, then decisions with drift.
SIMULATOR = {"sim_batches": 5, "sim_batch_size": 600, "sim_seed": 5, "sim_drift_at": 3}
# The last batch is decided by a team that asks a lot of a new model: it retrains on any new
# rows and wants the candidate 90 % better than production, so the decision is a rejection.
DEMANDING = {"retrain_new_rows_ratio": 0.01, "promotion_margin": 0.9}


@dataclass(frozen=True)
class Platform:
    settings: Settings  # api_url points at the running API
    history: list[dict[str, Any]]  # what the modeling pipeline returned, in order

    def env(self, **overrides: str) -> dict[str, str]:
        return self.settings.to_env() | {f"MLOPS_{k.upper()}": v for k, v in overrides.items()}


@pytest.fixture(scope="session")
def platform(postgres: LocalPostgres, mlflow_server: MlflowServer) -> Iterator[Platform]:
    stores_gen = _stores(postgres, shared=False)
    stores = next(stores_gen)
    settings = stores.with_model(
        mlflow_server.tracking_uri, "ui", retrain_new_rows_ratio=0.5, **SIMULATOR
    )
    history = []
    with support.serve(app_from_settings(settings)) as source:
        settings = settings.replace(datasource_url=source)
        for number in range(1, SIMULATOR["sim_batches"] + 1):
            outcome = run_data_pipeline(settings)
            assert outcome["ingest"]["stored"], outcome
            last = number == SIMULATOR["sim_batches"]
            history.append(run_model_pipeline(settings.replace(**DEMANDING) if last else settings))
    assert history[0]["outcome"] == "promoted", history[0]["reason"]
    assert history[-1]["outcome"] == "rejected", history[-1]["reason"]
    settings = settings.replace(api_token="ui-token", inference_log_flush_s=0.1)
    with support.serve(create_app(settings)) as api_url:
        for price_hint in range(5):  # traffic for the Data page
            record = EXAMPLE_RECORD | {"bed": 2 + price_hint}
            httpx.post(f"{api_url}/predict", json=record, timeout=30).raise_for_status()
        yield Platform(settings.replace(api_url=api_url), history)
    next(stores_gen, None)


@pytest.fixture
def platform_env(platform: Platform) -> Iterator[Platform]:
    """The platform's settings in os.environ for this test (AppTest runs in this process)."""
    saved = dict(os.environ)
    os.environ.update(platform.env())
    try:
        yield platform
    finally:
        os.environ.clear()
        os.environ.update(saved)


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"
