"""The inference API keeps its OpenAPI contract: generated requests never get a 5xx.

schemathesis reads the app's own OpenAPI document and sends a few hundred generated requests
(valid and invalid bodies, with and without the hook's token) to the app under uvicorn, serving a
model the real pipelines trained and promoted in the real MLflow registry.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from mlops_platform.datasource.client import parse_batch
from mlops_platform.datasource.simulator import SimulatorConfig, generate_batch
from mlops_platform.local.postgres import LocalPostgres
from mlops_platform.pipelines.clean import clean_pending
from mlops_platform.pipelines.ingest import store_batch
from mlops_platform.pipelines.modeling import run_model_pipeline
from mlops_platform.serving.app import create_app
from mlops_platform.settings import load_settings
from tests.conftest import _stores
from tests.plugins.mlflow_stack import MlflowServer
from tests.support import serve

pytestmark = pytest.mark.integration

TOKEN = "contract-token-1"
CONFIG = SimulatorConfig(batches=1, batch_size=400, seed=21)


@pytest.fixture(scope="module")
def api_url(postgres: LocalPostgres, mlflow_server: MlflowServer) -> Iterator[str]:
    """The API under uvicorn, serving version 1 of a model trained on one simulator batch."""
    stores_gen = _stores(postgres, shared=False)
    stores = next(stores_gen)
    name = f"contract_{uuid.uuid4().hex[:8]}"
    settings_ = stores.settings(
        mlflow_tracking_uri=mlflow_server.tracking_uri,
        model_name=name,
        experiment_name=name,
        api_token=TOKEN,
        max_batch_records=20,
        inference_log_flush_s=0.2,
    )
    payload = {
        "group_number": 1,
        "day": "Wednesday",
        "batch_number": 1,
        "data": generate_batch(CONFIG, 1, "Wednesday", 1),
    }
    store_batch(stores.raw, parse_batch(json.dumps(payload), "sim", 1, "Wednesday"))
    clean_pending(stores.raw, stores.clean, test_fraction=0.2)
    assert run_model_pipeline(settings_)["outcome"] == "promoted"
    with serve(create_app(settings_)) as url:
        yield url
    next(stores_gen, None)


@pytest.fixture(scope="module")
def api_schema(api_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{api_url}/openapi.json")


# Generated cases per operation; the GETs take no input, so a few calls cover them.
EXAMPLES = {"/predict": 150, "/explain": 80, "/hooks/model_update": 30}
OPERATIONS = [
    (method.upper(), path)
    for path, methods in create_app(load_settings()).openapi()["paths"].items()
    for method in methods
]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]
CHECKS += [response_schema_conformance]


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_generated_requests_never_get_a_server_error(
    api_schema: schemathesis.BaseSchema, api_url: str, method: str, path: str
) -> None:
    operation = api_schema[path][method]
    cases = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
        GenerationMode.NEGATIVE
    )
    headers = {"Authorization": f"Bearer {TOKEN}"} if path.startswith("/hooks") else None
    calls = []

    @given(case=cases)
    @settings(
        max_examples=EXAMPLES.get(path, 5),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        calls.append(case.call_and_validate(base_url=api_url, headers=headers, checks=CHECKS))

    check()
    assert calls
