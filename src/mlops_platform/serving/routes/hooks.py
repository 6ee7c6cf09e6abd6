"""``POST /hooks/model_update``: the pipeline's "production moved" call (bearer token).

The reload happens inside the request, so the caller learns whether the new version serves.
The alias poll does the same on its own; this hook only makes it immediate.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Response, status

from mlops_platform.serving.routes.deps import ApiDep, require_token
from mlops_platform.serving.routes.schemas import Problem, ReloadResponse

router = APIRouter(tags=["hooks"])

_STATUS = {
    "loaded": status.HTTP_200_OK,
    "unchanged": status.HTTP_200_OK,
    "no_model": status.HTTP_404_NOT_FOUND,
    "failed": status.HTTP_503_SERVICE_UNAVAILABLE,
    "unreachable": status.HTTP_503_SERVICE_UNAVAILABLE,
}


@router.post(
    "/hooks/model_update",
    response_model=ReloadResponse,
    dependencies=[Depends(require_token)],
    responses={
        401: {"model": Problem, "description": "Missing or wrong bearer token."},
        404: {"model": ReloadResponse, "description": "The production alias is not set."},
        503: {"model": ReloadResponse, "description": "Loading failed; the old model serves."},
    },
    summary="Reload the production model now",
)
async def model_update(api: ApiDep, response: Response, force: bool = False) -> ReloadResponse:
    """Load the version under the alias if it moved (``force=true``: reload it regardless)."""
    result = await asyncio.to_thread(api.holder.refresh, force=force)
    response.status_code = _STATUS[result.outcome]
    return ReloadResponse(
        outcome=result.outcome,
        version=result.version,
        previous=result.previous,
        detail=result.detail,
    )
