"""``GET /metrics``: Prometheus exposition of the names in ``docs/metrics.md``."""

from __future__ import annotations

from fastapi import APIRouter, Response

from mlops_platform.serving.routes.deps import ApiDep

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
    summary="Prometheus metrics",
)
async def metrics(api: ApiDep) -> Response:
    content, media_type = api.metrics.render()
    return Response(content, media_type=media_type)
