"""The MLflow service for real: a tracking server on PostgreSQL with artifacts in S3 (``weed``).

A client with no S3 credentials logs, registers, aliases and loads a scikit-learn model through
the server, and the bytes and rows are then found where they belong: objects in the bucket,
metadata in PostgreSQL.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import psycopg
import pytest
import skops.io
from botocore.exceptions import ClientError
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder

from mlops_platform.local.mlflow_server import (
    server_command,
    server_env,
    upgrade_backend,
)
from mlops_platform.local.postgres import LocalPostgres
from mlops_platform.local.s3 import S3Error, s3_client, wait_s3, weed_binary
from mlops_platform.settings import Settings, load_settings
from tests.plugins.mlflow_stack import MlflowServer, S3Server

pytestmark = pytest.mark.integration

MODEL = "house_price"
CLIENT_CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "MLFLOW_S3_ENDPOINT_URL",
)


def listings(rows: int = 200) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "bed": rng.integers(1, 6, rows).astype(float),
            "house_size": rng.normal(1800, 400, rows),
            "state": rng.choice(["California", "Texas", "New York"], rows),
        }
    )
    price = 50_000 * frame["bed"] + 120 * frame["house_size"] + rng.normal(0, 5_000, rows)
    return frame, price.to_numpy()


def house_model(frame: pd.DataFrame, price: np.ndarray) -> Pipeline:
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["state"]), remainder="passthrough"
    )
    return make_pipeline(encode, HistGradientBoostingRegressor(max_iter=20)).fit(frame, price)


def trusted_types(model: Pipeline) -> list[str]:
    """Types skops will not load by default, once checked to come from scikit-learn only.

    skops refuses unknown types at load (here the gradient-boosting ``TreePredictor``); MLflow
    stores this list in the MLmodel file and passes it back to ``skops.io.load``.
    """
    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    foreign = [name for name in untrusted if not name.startswith("sklearn.")]
    assert not foreign, f"model holds types outside scikit-learn: {foreign}"
    return untrusted


@pytest.fixture
def client_without_s3_credentials(
    mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[MlflowClient]:
    """An MLflow client that can reach S3 only through the tracking server."""
    for name in CLIENT_CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    mlflow.set_tracking_uri(mlflow_server.tracking_uri)
    yield MlflowClient(mlflow_server.tracking_uri)
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # back to the environment's


# MLflow 3.17 compares DataFrame columns with a range when it saves the input example.
@pytest.mark.filterwarnings("ignore:Operation with range is deprecated")
def test_model_round_trip_through_the_server(
    client_without_s3_credentials: MlflowClient,
    mlflow_server: MlflowServer,
    s3: S3Server,
    postgres: LocalPostgres,
) -> None:
    client = client_without_s3_credentials
    frame, price = listings()
    model = house_model(frame, price)
    mlflow.set_experiment(mlflow_server.settings.experiment_name)
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
            skops_trusted_types=trusted_types(model),
            signature=infer_signature(frame, model.predict(frame)),
            input_example=frame.head(3),
            # Named, not inferred: inference loads the model in a subprocess (~3 s a model).
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
            registered_model_name=MODEL,
        )
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    client.set_registered_model_alias(MODEL, "production", info.registered_model_version)

    uri = f"models:/{MODEL}@production"
    expected = model.predict(frame.head(20))
    served = mlflow.pyfunc.load_model(uri)
    np.testing.assert_allclose(served.predict(frame.head(20)), expected)
    raw = mlflow.sklearn.load_model(uri)
    assert isinstance(raw, Pipeline)
    np.testing.assert_allclose(raw.predict(frame.head(20)), expected)

    keys = _bucket_keys(s3)
    assert any(key.endswith("/model.skops") for key in keys), keys
    assert any(key.endswith("/MLmodel") for key in keys), keys
    assert all(key.startswith("artifacts/") for key in keys), keys
    with psycopg.connect(postgres.conninfo("mlflow")) as conn:
        names = conn.execute("SELECT name FROM registered_models").fetchall()
        aliases = conn.execute(
            "SELECT alias, version FROM registered_model_aliases WHERE name = %s", (MODEL,)
        ).fetchall()
    assert (MODEL,) in names
    assert aliases == [("production", int(info.registered_model_version))]


def _bucket_keys(s3: S3Server) -> list[str]:
    client = s3_client(s3.endpoint_url, s3.access_key, s3.secret_key)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_skops_refuses_gradient_boosting_without_trusted_types(tmp_path: Path) -> None:
    """Why ``skops_trusted_types`` is passed above: without it the save itself fails."""
    frame, price = listings(50)
    with pytest.raises(MlflowException, match="untrusted types"):
        mlflow.sklearn.save_model(house_model(frame, price), tmp_path / "model")


def test_s3_refuses_wrong_credentials(s3: S3Server) -> None:
    wrong = s3_client(s3.endpoint_url, s3.access_key, "not-the-secret", attempts=1)
    with pytest.raises(ClientError) as refused:
        wrong.list_objects_v2(Bucket=s3.bucket)
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert httpx.get(f"{s3.endpoint_url}/{s3.bucket}/").status_code == 403  # unsigned
    with pytest.raises(S3Error, match="MLOPS_S3_SECRET_KEY"):
        wait_s3(s3.endpoint_url, s3.access_key, "not-the-secret", timeout_s=10)


def test_missing_weed_binary_says_what_to_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A fault we cannot cause otherwise: a Python with no ``weed`` beside it or on PATH."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(S3Error, match="make install"):
        weed_binary()


def test_server_accepts_cluster_host_names_only(mlflow_server: MlflowServer) -> None:
    """MLflow 3 checks the Host header; in-cluster names must pass, a stranger must not."""
    url = f"{mlflow_server.tracking_uri}/api/2.0/mlflow/experiments/search"
    for host in ("mlflow:5000", "mlflow.mlops.svc.cluster.local:5000", "10.42.0.7:5000"):
        response = httpx.post(url, json={"max_results": 1}, headers={"Host": host})
        assert response.status_code == 200, (host, response.text)
    stranger = httpx.post(url, json={"max_results": 1}, headers={"Host": "evil.example:5000"})
    assert stranger.status_code == 403


def test_server_command_renders_the_flags() -> None:
    settings = load_settings(
        mlflow_backend_db_url="postgresql://mlflow:s3cret@db:5432/mlflow",
        mlflow_artifacts_uri="s3://models/artifacts",
        mlflow_tracking_uri="http://mlflow.example.org:5000",
        mlflow_host="0.0.0.0",
        mlflow_port=5123,
        mlflow_workers=3,
        s3_endpoint_url="http://minio:9000",
        s3_access_key="key",
        s3_secret_key="secret",
    )
    command = server_command(settings)
    assert command[1:4] == ["-m", "mlflow", "server"]
    flags = _flags(command[4:])
    assert flags["--backend-store-uri"] == "postgresql+psycopg://mlflow:s3cret@db:5432/mlflow"
    assert flags["--serve-artifacts"] == ""
    assert flags["--artifacts-destination"] == "s3://models/artifacts"
    assert (flags["--host"], flags["--port"], flags["--workers"]) == ("0.0.0.0", "5123", "3")
    hosts = flags["--allowed-hosts"].split(",")
    assert {"mlflow", "mlflow:*", "mlflow.*", "mlflow.example.org:*", "localhost:*"} <= set(hosts)
    expected_env = {
        "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "MLFLOW_S3_ENDPOINT_URL": "http://minio:9000",
    }
    assert expected_env.items() <= server_env(settings).items()


def _flags(arguments: list[str]) -> dict[str, str]:
    """``--flag value`` pairs; a switch with no value maps to ""."""
    flags: dict[str, str] = {}
    for index, argument in enumerate(arguments):
        if argument.startswith("--"):
            following = arguments[index + 1 : index + 2]
            flags[argument] = (
                following[0] if following and not following[0].startswith("--") else ""
            )
    return flags


def test_upgrade_backend_on_a_fresh_database_twice(postgres: LocalPostgres) -> None:
    postgres.ensure_database("mlflow_upgrade", "mlflow", "mlflow")
    settings = load_settings(
        mlflow_backend_db_url=postgres.url("mlflow_upgrade", "mlflow", "mlflow")
    )
    upgrade_backend(settings)
    upgrade_backend(settings)
    with psycopg.connect(postgres.conninfo("mlflow_upgrade")) as conn:
        revisions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'registered_models'"
        ).fetchone()
    assert len(revisions) == 1
    assert tables == (1,)


def test_mlflow_settings_point_at_the_server_with_names_of_their_own(
    mlflow_settings: Settings, mlflow_server: MlflowServer
) -> None:
    assert mlflow_settings.mlflow_tracking_uri == mlflow_server.tracking_uri
    assert mlflow_settings.model_name.startswith(f"{MODEL}_t")
    assert mlflow_settings.experiment_name != mlflow_server.settings.experiment_name
