"""``POST /explain``: one listing's SHAP waterfall, per original field, in log-price space."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, status
from fastapi.concurrency import run_in_threadpool

from mlops_platform.pipelines.explain import explain_record
from mlops_platform.pipelines.features import raw_frame
from mlops_platform.schema import ListingFeatures
from mlops_platform.serving.routes.deps import ApiDep, ServedModelDep
from mlops_platform.serving.routes.schemas import ExplainResponse, Problem
from mlops_platform.serving.state import EXAMPLE_RECORD, ApiState, LoadedModel

router = APIRouter(tags=["explain"])


@router.post(
    "/explain",
    response_model=ExplainResponse,
    responses={
        400: {"model": Problem, "description": "The body could not be read (not UTF-8 JSON)."},
        429: {
            "model": Problem,
            "description": "Every explanation turn stayed busy (MLOPS_EXPLAIN_WAIT_S): try "
            "again after Retry-After.",
        },
        503: {"model": Problem, "description": "No model, or no SHAP background yet."},
    },
    summary="SHAP contributions of each field to one listing's predicted log(price)",
)
async def explain(
    record: Annotated[ListingFeatures, Body(openapi_examples={"one": {"value": EXAMPLE_RECORD}})],
    served: ServedModelDep,
    api: ApiDep,
) -> ExplainResponse:
    if served.background is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"version {served.version.version} has no SHAP background (shap/background.json) "
            "yet: the modeling pipeline's evaluate task writes it; the API picks it up on its "
            "next poll",
        )
    async with _turn(api):
        # SHAP is CPU work: a worker thread, so the event loop keeps answering /predict.
        return await run_in_threadpool(_explained, record, served)


@asynccontextmanager
async def _turn(api: ApiState) -> AsyncIterator[None]:
    """One of ``explain_concurrency`` turns, waited for (on the event loop, holding no thread)
    at most ``explain_wait_s``; else 429 with Retry-After, so a crowd of /explain calls sheds
    instead of queueing every prediction behind SHAP. 429, as Kubernetes' API server answers
    when its priority queues are full: shedding is not a server error for the 5xx alert."""
    settings, slots = api.settings, api.explain_slots
    try:
        if slots.locked():
            await asyncio.wait_for(slots.acquire(), timeout=settings.explain_wait_s)
        else:  # a free turn is taken at once (wait_for with a timeout of 0 would refuse it)
            await slots.acquire()
    except TimeoutError:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"every explanation turn is busy ({settings.explain_concurrency} at once, "
            f"MLOPS_EXPLAIN_CONCURRENCY) and none came free in {settings.explain_wait_s:g} s: "
            "try again shortly",
            headers={"Retry-After": str(max(1, math.ceil(settings.explain_wait_s)))},
        ) from None
    try:
        yield
    finally:
        slots.release()


def _explained(record: ListingFeatures, served: LoadedModel) -> ExplainResponse:
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
