"""The one settings object. Every knob is an ``MLOPS_*`` environment variable with a local default.

Why one object: the same task functions run under Airflow, the CLI and tests; they all take a
``Settings`` value instead of reading the environment themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, PostgresDsn, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Weekday = Literal["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

ENV_PREFIX = "MLOPS_"


class SettingsError(ValueError):
    """A setting has a bad value; the message names the variable to fix."""


class Settings(BaseSettings):
    """Platform configuration; read once at start-up with :func:`load_settings`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # --- stores -------------------------------------------------------------------------------
    raw_db_url: PostgresDsn = Field(
        default="postgresql+psycopg://rawdata@127.0.0.1:5432/rawdata",
        description="RAW store: batches, listings as received, inference logs.",
    )
    clean_db_url: PostgresDsn = Field(
        default="postgresql+psycopg://cleandata@127.0.0.1:5432/cleandata",
        description=(
            "CLEAN store: typed listings, repaired fields, rejected rows, model history. May "
            "equal RAW."
        ),
    )

    # --- data source --------------------------------------------------------------------------
    datasource_url: str = Field(
        default="http://127.0.0.1:8000", description="Base URL of the data-source API."
    )
    group_number: int = Field(default=1, ge=1, description="Group whose batches are collected.")
    day: Weekday = Field(default="Wednesday", description="Day whose batches are collected.")
    http_timeout_s: float = Field(default=30.0, gt=0, description="Per-request timeout.")
    http_retries: int = Field(default=5, ge=1, le=20, description="Attempts per request.")
    http_backoff_s: float = Field(default=0.5, ge=0, description="First retry wait; doubles.")

    # --- simulator (mlops datasource serve) ---------------------------------------------------
    sim_host: str = Field(default="127.0.0.1", description="Simulator bind address.")
    sim_port: int = Field(default=8000, ge=1, le=65535, description="Simulator port.")
    sim_batches: int = Field(default=10, ge=1, le=10_000, description="Batches per group/day.")
    sim_batch_size: int = Field(default=2000, ge=1, le=1_000_000, description="Rows per batch.")
    sim_seed: int = Field(default=42, description="Seed; same seed, group and day → same batches.")
    sim_drift_at: int = Field(
        default=6, ge=1, description="First batch number of the drifted regime (1-based)."
    )
    sim_drift_strength: float = Field(
        default=1.0, ge=0, le=5, description="0 = no regime change; 1 = the default shift."
    )
    sim_dirty_rate: float = Field(
        default=0.03, ge=0, le=1, description="Share of rows with an invalid value."
    )
    sim_csv: Path | None = Field(
        default=None, description="Serve this USA real-estate CSV instead of synthetic data."
    )

    # --- cleaning -----------------------------------------------------------------------------
    test_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="Share of clean rows in the test split."
    )

    # --- MLflow and object storage -------------------------------------------------------------
    mlflow_tracking_uri: str = Field(
        default="http://127.0.0.1:5000", description="MLflow tracking server clients talk to."
    )
    mlflow_backend_db_url: PostgresDsn = Field(
        default="postgresql+psycopg://mlflow@127.0.0.1:5432/mlflow",
        description="MLflow server metadata store (PostgreSQL; SQLite is not supported).",
    )
    mlflow_artifacts_uri: str = Field(
        default="s3://mlflow/artifacts",
        description="Where the MLflow server keeps artifacts (clients go through the server).",
    )
    mlflow_host: str = Field(default="127.0.0.1", description="MLflow server bind address.")
    mlflow_port: int = Field(default=5000, ge=1, le=65535, description="MLflow server port.")
    mlflow_workers: int = Field(default=1, ge=1, le=32, description="MLflow server workers.")
    s3_endpoint_url: str = Field(
        default="http://127.0.0.1:8333", description="S3 API endpoint (MinIO-compatible)."
    )
    # No default keys or passwords: `mlops up` generates them (keys.json in the state folder)
    # and fills in the database URLs' passwords; on the cluster the secrets chart makes them.
    s3_access_key: str = Field(default="", description="S3 access key id (local: generated).")
    s3_secret_key: str = Field(default="", description="S3 secret access key (local: generated).")
    s3_port: int = Field(default=8333, ge=1, le=65535, description="Local S3 server port.")
    model_name: str = Field(default="house_price", description="Registered model name.")
    model_alias: str = Field(default="production", description="Alias of the serving model.")

    # --- modeling -----------------------------------------------------------------------------
    experiment_name: str = Field(default="house_price", description="MLflow experiment.")
    train_seed: int = Field(default=42, description="Seed of every random choice in training.")
    # One family by default: linear_trees won every comparison measured against hgb (validation
    # MAE on five simulator streams with drift, and at 100k and 1M rows; docs/BENCHMARKS.md),
    # and the comparison was half of training's time. Naming several brings it back.
    model_families: str = Field(
        default="linear_trees",
        pattern=r"^(glm|hgb|linear_trees)(,(glm|hgb|linear_trees))*$",
        description="Model families a new model is chosen from (comma-separated: glm, hgb, "
        "linear_trees): each is fitted on a selection sample and the lowest validation MAE wins; "
        "a single family is fitted once, on every train row.",
    )
    drift_psi_threshold: float = Field(
        default=0.2, gt=0, description="A feature with PSI above this has drifted."
    )
    error_ratio_threshold: float = Field(
        default=1.25,
        gt=1,
        description="Retrain when production MAE on new rows exceeds its test MAE by this factor.",
    )
    # 5 %, not "when the data has doubled": training takes seconds at these sizes and the
    # promotion gate (evidence beyond noise) decides whether the new model serves. Waiting for
    # the rows to double left production a batch or more behind the market it is scored on
    # (bench/quality.py: served MAE 4 % higher with the newest batch left out).
    retrain_new_rows_ratio: float = Field(
        default=0.05,
        gt=0,
        description="Retrain when new rows reach this share of the rows the "
        "production model was trained on.",
    )
    min_new_rows: int = Field(
        default=200, ge=1, description="Fewer new clean rows than this never trigger a retrain."
    )
    promotion_margin: float = Field(
        default=0.01, ge=0, lt=1, description="Candidate MAE must beat production by this share."
    )
    promotion_confidence: float = Field(
        default=0.95,
        gt=0.5,
        lt=1,
        description="A candidate's MAE gain must stay above zero at this confidence in a paired "
        "bootstrap over the test rows (a first model's, over the naive baseline, is reported).",
    )
    r2_tolerance: float = Field(
        default=0.01, ge=0, description="Guardrail: candidate R² may trail production by this."
    )
    recency_half_life: float = Field(
        default=3.0, gt=0, description="Training weight halves every this many batches back."
    )
    eval_window_batches: int = Field(
        default=2,
        ge=1,
        description="Champion and challenger are compared on the test rows "
        "of this many most recent batches.",
    )
    shap_sample_rows: int = Field(
        default=300, ge=10, le=100_000, description="Rows explained for global SHAP importance."
    )

    # --- inference API --------------------------------------------------------------------------
    api_host: str = Field(default="127.0.0.1", description="Inference API bind address.")
    api_port: int = Field(default=8989, ge=1, le=65535, description="Inference API port.")
    api_workers: int = Field(default=1, ge=1, le=64, description="Inference API processes.")
    api_url: str = Field(
        default="http://127.0.0.1:8989", description="Where clients reach the inference API."
    )
    # No default token: unset, the hook refuses every call (`mlops up` generates one; the
    # cluster's comes from the secrets chart).
    api_token: str = Field(
        default="",
        pattern=r"^(|.{8,})$",
        description=(
            "Bearer token for POST /hooks/model_update (from a Secret in Kubernetes); at least 8 "
            "characters; unset, the hook is off."
        ),
    )
    max_batch_records: int = Field(
        default=1000, ge=1, le=100_000, description="Most records one /predict may carry."
    )
    max_body_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1024,
        description="Largest request body the API reads (413 beyond it, before reading it all).",
    )
    model_poll_interval_s: float = Field(
        default=30.0, gt=0, description="How often the API checks the production alias."
    )
    # SHAP costs ~100x a prediction and holds the GIL: unbounded, 64 users' /explain calls made
    # a one-record /predict wait 330 ms at the median; 1 or 2 turns, 2-4 ms, and 2 computed as
    # many explanations as unbounded (docs/RELIABILITY.md, load).
    explain_concurrency: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Most /explain requests one API worker computes at once.",
    )
    explain_wait_s: float = Field(
        default=5.0,
        ge=0,
        le=600,
        description="Longest an /explain request waits for its turn before 429 (Retry-After).",
    )
    inference_log_queue_size: int = Field(
        default=10_000, ge=1, description="Inference-log rows kept in memory while RAW is away."
    )
    # Large enough to catch up: each COPY costs a few GIL hand-offs, slow while /explain threads
    # hold the GIL; at 500 rows the writer fell behind 700 rows/s and the queue dropped rows
    # (tests/reliability/test_load.py, 64 users while the DAGs run).
    inference_log_batch_size: int = Field(
        default=5000, ge=1, description="Inference-log rows written per database round trip."
    )
    inference_log_flush_s: float = Field(
        default=1.0, gt=0, description="Longest an inference-log row waits before a write."
    )

    # --- loop metrics exporter (`mlops serve exporter`) ----------------------------------------
    exporter_host: str = Field(default="127.0.0.1", description="Loop metrics exporter address.")
    exporter_port: int = Field(
        default=9188, ge=1, le=65535, description="Loop metrics exporter port (/metrics)."
    )
    exporter_cache_s: float = Field(
        default=10.0,
        ge=0,
        description="Seconds a reading of the stores answers scrapes before it is read again.",
    )

    # --- local Prometheus (`mlops up`, when a `prometheus` binary is installed) -----------------
    prometheus_port: int = Field(
        default=9090, ge=1, le=65535, description="Local Prometheus port (the chart's too)."
    )
    prometheus_scrape_interval_s: int = Field(
        default=15,
        ge=1,
        le=3600,
        description="Local Prometheus: seconds between scrapes and between rule evaluations.",
    )
    # The chart's alerts.dataIntervalSeconds, locally: MlopsLoopNoNewData fires when the newest
    # RAW batch is older than two of these. Tests shorten it to see the alert within seconds.
    prometheus_data_interval_s: int = Field(
        default=3600,
        ge=1,
        description="Local alert rules: the data DAG's schedule interval in seconds.",
    )

    # --- UI ------------------------------------------------------------------------------------
    ui_host: str = Field(default="127.0.0.1", description="Streamlit UI bind address.")
    ui_port: int = Field(default=8501, ge=1, le=65535, description="Streamlit UI port.")

    # --- local platform -----------------------------------------------------------------------
    state_dir: Path = Field(default=Path(".mlops"), description="Where `mlops up` keeps state.")
    pg_port: int = Field(default=5432, ge=1, le=65535, description="Local PostgreSQL port.")

    # --- Airflow on one machine (`mlops up`; on Kubernetes the airflow chart configures it) ----
    airflow_db_url: PostgresDsn = Field(
        default="postgresql+psycopg://airflow@127.0.0.1:5432/airflow",
        description="Airflow's metadata database (its own owner).",
    )
    airflow_port: int = Field(default=8080, ge=1, le=65535, description="Airflow api-server port.")
    airflow_worker_log_port: int = Field(
        default=8793, ge=1, le=65535, description="Airflow's task-log server (LocalExecutor)."
    )
    airflow_triggerer_log_port: int = Field(
        default=8794, ge=1, le=65535, description="Airflow triggerer's log server."
    )
    airflow_parallelism: int = Field(
        default=4, ge=1, le=64, description="Tasks Airflow runs at once (LocalExecutor processes)."
    )
    airflow_admin_user: str = Field(default="admin", description="Airflow UI login.")
    dags_dir: Path = Field(default=Path("dags"), description="The DAGs Airflow loads.")

    @field_validator("datasource_url", "api_url", "mlflow_tracking_uri", "s3_endpoint_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    def replace(self, **changes: object) -> Settings:
        """A copy with ``changes`` applied and validated (``model_copy`` would not validate)."""
        try:
            return type(self)(**{**self.model_dump(), **changes})
        except ValidationError as error:
            raise SettingsError(_describe(error)) from None

    def to_env(self) -> dict[str, str]:
        """These settings as ``MLOPS_*`` variables, for a child process to read back."""
        return {
            f"{ENV_PREFIX}{name.upper()}": str(value)
            for name, value in self.model_dump(mode="json").items()
            if value is not None
        }

    @property
    def raw_url(self) -> str:
        return str(self.raw_db_url)

    @property
    def clean_url(self) -> str:
        return str(self.clean_db_url)

    @property
    def families(self) -> tuple[str, ...]:
        """``model_families`` as names, each once, in the order given."""
        return tuple(dict.fromkeys(self.model_families.split(",")))


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "?"
        got = item.get("input")
        lines.append(f"{ENV_PREFIX}{field.upper()}={got!r}: {item['msg']}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; a bad value raises SettingsError naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None
