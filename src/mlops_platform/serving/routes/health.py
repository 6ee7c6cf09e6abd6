"""``GET /healthz`` (the process answers) and ``GET /readyz`` (a model is loaded)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from mlops_platform.serving.routes.deps import ApiDep
from mlops_platform.serving.routes.schemas import Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "No model loaded; reason says why."}},
    summary="Readiness: a production model is loaded and serving",
)
async def readyz(api: ApiDep) -> JSONResponse:
    current = api.holder.current
    if current is None:
        return JSONResponse({"ready": False, "reason": api.holder.unavailable()}, status_code=503)
    return JSONResponse({"ready": True, "version": current.version.version})
