"""``POST /predict``: one listing or a list of them → prices, with the model that made them.

The hot path: no MLflow or database call, the served model read once, rows logged by queueing
only, the answer serialised by orjson straight from the numpy array.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, Body, Depends, HTTPException, Request, Response, status
from pydantic import Discriminator, Field, Tag
from starlette.concurrency import run_in_threadpool

from mlops_platform.schema import ListingFeatures
from mlops_platform.serving.metrics import START_KEY
from mlops_platform.serving.routes.deps import current_model
from mlops_platform.serving.routes.schemas import PredictResponse, Problem
from mlops_platform.serving.state import EXAMPLE_RECORD, ApiState, LoadedModel

router = APIRouter(tags=["predict"])

# Batches this large run in the thread pool, so one big request does not stall the event loop.
THREADED_FROM_RECORDS = 64


def _shape(body: Any) -> str:
    return "records" if isinstance(body, list) else "record"


PredictBody = Annotated[
    Annotated[ListingFeatures, Tag("record")]
    | Annotated[list[ListingFeatures], Tag("records"), Field(min_length=1)],
    Discriminator(_shape),
]


@dataclass(frozen=True)
class Serving:
    """What one prediction request uses: the app's state and the model read once for it."""

    api: ApiState
    model: LoadedModel


async def serving(request: Request) -> Serving:
    """One dependency for the hot path (each extra level costs microseconds per request).

    Runs before the body is validated, so an over-long list gets 413 without validating any
    record; FastAPI has already parsed the JSON, and ``request.json()`` returns that value.
    """
    api: ApiState = request.app.state.api
    try:
        body = await request.json()
    except ValueError:  # not JSON: body validation answers it
        body = None
    limit = api.settings.max_batch_records
    if isinstance(body, list) and len(body) > limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"{len(body)} records in one request; at most {limit} (MLOPS_MAX_BATCH_RECORDS): "
            "split the list",
        )
    return Serving(api, current_model(api))


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses={
        400: {"model": Problem, "description": "The body could not be read (not UTF-8 JSON)."},
        413: {"model": Problem, "description": "More records than max_batch_records."},
        503: {"model": Problem, "description": "No production model is loaded (yet)."},
    },
    summary="Predict prices for one listing or a list of listings",
)
async def predict(
    body: Annotated[
        PredictBody,
        Body(
            openapi_examples={
                "one": {"summary": "one listing", "value": EXAMPLE_RECORD},
                "many": {"summary": "a list", "value": [EXAMPLE_RECORD, EXAMPLE_RECORD]},
            }
        ),
    ],
    request: Request,
    context: Annotated[Serving, Depends(serving)],
) -> Response:
    served, api = context.model, context.api
    records = body if isinstance(body, list) else [body]
    rows = [record.model_dump(mode="json") for record in records]
    predict_records = served.predictor.predict_records
    if len(rows) >= THREADED_FROM_RECORDS:
        prices = await run_in_threadpool(predict_records, rows)
    else:
        prices = predict_records(rows)
    prices = np.round(np.asarray(prices, dtype=np.float64), 2)
    latency_ms = (time.perf_counter() - request.scope.get(START_KEY, 0.0)) * 1000.0
    api.metrics.observe_predictions(prices)
    api.inference_log.submit(served.ref, rows, prices, latency_ms)
    content = orjson.dumps(
        {"predictions": prices, "model": served.ref}, option=orjson.OPT_SERIALIZE_NUMPY
    )
    return Response(content, media_type="application/json")
