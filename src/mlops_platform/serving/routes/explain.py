"""``POST /explain``: one listing's SHAP waterfall, per original field, in log-price space."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, status

from mlops_platform.pipelines.explain import explain_record
from mlops_platform.pipelines.features import raw_frame
from mlops_platform.schema import ListingFeatures
from mlops_platform.serving.routes.deps import ServedModelDep
from mlops_platform.serving.routes.schemas import ExplainResponse, Problem
from mlops_platform.serving.state import EXAMPLE_RECORD

router = APIRouter(tags=["explain"])


@router.post(
    "/explain",
    response_model=ExplainResponse,
    responses={
        400: {"model": Problem, "description": "The body could not be read (not UTF-8 JSON)."},
        503: {"model": Problem, "description": "No model, or no SHAP background yet."},
    },
    summary="SHAP contributions of each field to one listing's predicted log(price)",
)
def explain(  # plain def: SHAP is CPU work, so it runs in the thread pool, not on the event loop
    record: Annotated[ListingFeatures, Body(openapi_examples={"one": {"value": EXAMPLE_RECORD}})],
    served: ServedModelDep,
) -> ExplainResponse:
    if served.background is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"version {served.version.version} has no SHAP background (shap/background.json) "
            "yet: the modeling pipeline's explain task writes it; the API picks it up on its "
            "next poll",
        )
    frame = raw_frame([record.model_dump(mode="json")])
    result = explain_record(served.model, frame, served.background)
    contributions = result["contributions"]
    return ExplainResponse(
        model=served.ref,
        space=result["space"],
        base_value=result["base_value"],
        contributions=contributions,
        log_prediction=result["base_value"] + math.fsum(contributions.values()),
        prediction=result["prediction"],
    )
