"""``POST /predict``: one listing or a list of them → prices, with the model that made them.

The hot path: no MLflow or database call, the served model read once, the body parsed by orjson
(:mod:`~mlops_platform.serving.json_request`) and checked once column-wise
(:mod:`~mlops_platform.serving.body`), rows logged by queueing only, the answer serialised by
orjson straight from the numpy array.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, Body, HTTPException, Request, Response, status
from pydantic import SkipValidation
from starlette.concurrency import run_in_threadpool

from mlops_platform.serving.body import PredictBody, VerdictMemo, check_body
from mlops_platform.serving.json_request import FastJSONRoute
from mlops_platform.serving.metrics import START_KEY
from mlops_platform.serving.routes.deps import current_model
from mlops_platform.serving.routes.schemas import PredictResponse, Problem
from mlops_platform.serving.state import EXAMPLE_RECORD, ApiState, LoadedModel

router = APIRouter(tags=["predict"], route_class=FastJSONRoute)

# Bodies this large run in the thread pool, so one big request does not stall the event loop.
# Smaller ones (100 records: ~1 ms) run inline: the hop to a thread costs more than it saves, and
# under load its GIL hand-offs (up to the 5 ms switch interval each) made the latency tail.
THREADED_FROM_RECORDS = 256


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
    # Documented as PredictBody, checked by check_body: FastAPI's validation would build a
    # pydantic model per record, which is what made 100-record requests slow.
    body: Annotated[
        Annotated[PredictBody, SkipValidation],
        Body(
            openapi_examples={
                "one": {"summary": "one listing", "value": EXAMPLE_RECORD},
                "many": {"summary": "a list", "value": [EXAMPLE_RECORD, EXAMPLE_RECORD]},
            }
        ),
    ],
    request: Request,
) -> Response:
    api: ApiState = request.app.state.api
    limit = api.settings.max_batch_records
    if isinstance(body, list) and len(body) > limit:  # counted before any record is checked
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"{len(body)} records in one request; at most {limit} (MLOPS_MAX_BATCH_RECORDS): "
            "split the list",
        )
    served = current_model(api)
    if isinstance(body, list) and len(body) >= THREADED_FROM_RECORDS:
        records, prices = await run_in_threadpool(_predict, body, served, api.verdicts)
    else:
        records, prices = _predict(body, served, api.verdicts)
    latency_ms = (time.perf_counter() - request.scope.get(START_KEY, 0.0)) * 1000.0
    api.metrics.observe_predictions(prices)
    api.inference_log.submit(served.ref, records, prices, latency_ms)
    content = orjson.dumps(
        {"predictions": prices, "model": served.ref}, option=orjson.OPT_SERIALIZE_NUMPY
    )
    return Response(content, media_type="application/json")


def _predict(
    body: Any, served: LoadedModel, verdicts: VerdictMemo
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The body's records, checked, and their prices rounded to cents."""
    checked = check_body(body, verdicts)
    prices = served.predictor.predict_columns(checked.columns)
    return checked.records(), np.round(np.asarray(prices, dtype=np.float64), 2)
