"""``GET /model``: what is being served, what it was trained on, and how it scored."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from mlops_platform.serving.routes.deps import ApiDep, ServedModelDep
from mlops_platform.serving.routes.schemas import ModelInfo, Problem

router = APIRouter(tags=["model"])


@router.get(
    "/model",
    response_model=ModelInfo,
    responses={503: {"model": Problem, "description": "No production model is loaded (yet)."}},
    summary="The production model being served",
)
async def model(served: ServedModelDep, api: ApiDep) -> dict[str, Any]:
    return served.describe(api.settings.model_alias) | {"not_loaded": api.holder.not_loaded}
