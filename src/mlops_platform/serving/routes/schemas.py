"""Request and response bodies, declared for the OpenAPI document (schemathesis, clients).

A request record is :class:`~mlops_platform.schema.ListingFeatures` itself: the one definition
of a listing, shared with cleaning and the UI.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ModelRef(BaseModel):
    name: str
    version: str
    run_id: str


class PredictResponse(BaseModel):
    predictions: list[float | None] = Field(
        description="Predicted price in US dollars, one per record, in request order."
    )
    model: ModelRef = Field(description="The registered model version that produced them.")


class ExplainResponse(BaseModel):
    model: ModelRef
    space: str = Field(
        description="The space contributions add up in: log(price), natural log of dollars."
    )
    base_value: float = Field(description="Expected log(price) over the SHAP background rows.")
    contributions: dict[str, float] = Field(
        description="SHAP value per original listing field, in log(price) units."
    )
    log_prediction: float = Field(description="base_value + sum(contributions).")
    prediction: float = Field(description="Predicted price in US dollars (exp of log_prediction).")


class NotLoaded(BaseModel):
    version: str = Field(description="The version under the alias.")
    reason: str = Field(description="Why it could not be loaded.")
    at: str = Field(description="When the last attempt failed (UTC, ISO 8601).")


class ModelInfo(BaseModel):
    name: str
    version: str
    run_id: str
    alias: str
    family: str | None
    metrics: dict[str, float] = Field(description="The MLflow run's metrics (test_*, ...).")
    promoted_at: str | None
    training_data: dict[str, Any] = Field(description="What the version was trained on (tags).")
    tags: dict[str, str]
    path: str = Field(description="How predictions are computed: compiled or pipeline.")
    path_reason: str | None = Field(description="Why the pipeline serves, not the compiled path.")
    path_verified_rows: int = Field(
        description="Rows the compiled path matched the pipeline on: the fixed edge rows, plus "
        "the version's SHAP background rows once they exist (0 when the pipeline serves)."
    )
    explain_available: bool
    loaded_at: str
    not_loaded: NotLoaded | None = Field(
        default=None,
        description="The version under the alias that could not be loaded, while this older "
        'one serves (mlops_api_model_reloads_total{outcome="failed"} counts the attempts).',
    )


class ReloadResponse(BaseModel):
    outcome: str = Field(description="loaded, unchanged, failed, no_model or unreachable")
    version: str | None = Field(description="The version served after this call.")
    previous: str | None = Field(description="The version served before this call.")
    detail: str


class Readiness(BaseModel):
    ready: bool
    reason: str | None = None
    version: str | None = None


class Problem(BaseModel):
    detail: Any
