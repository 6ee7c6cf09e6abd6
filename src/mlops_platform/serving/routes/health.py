"""``GET /healthz`` (the process answers) and ``GET /readyz`` (this replica serves what exists)."""

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
    responses={
        503: {
            "model": Readiness,
            "description": "A production model exists but is not loaded here; reason says why.",
        }
    },
    summary="Readiness: serving the production model, or there is none yet",
)
async def readyz(api: ApiDep) -> JSONResponse:
    """Ready when serving the production model, and also when the registry has none yet: a fresh
    platform's API must be Ready (its Service gets endpoints, the production DAG's hook reaches
    it, `helm install --wait` returns) and answers /predict with 503 and why. Not ready while a
    production model exists that this replica has not loaded (loading, failed, MLflow down)."""
    holder = api.holder
    current = holder.current
    if current is not None:
        return JSONResponse({"ready": True, "version": current.version.version})
    if holder.no_model_yet:
        return JSONResponse({"ready": True, "reason": holder.unavailable()})
    return JSONResponse({"ready": False, "reason": holder.unavailable()}, status_code=503)
