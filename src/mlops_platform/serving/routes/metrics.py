"""``GET /metrics``: Prometheus exposition of the names in ``docs/metrics.md``."""

from __future__ import annotations

from fastapi import APIRouter, Response

from mlops_platform.serving.routes.deps import MetricsDep

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
    summary="Prometheus metrics",
)
async def metrics(api_metrics: MetricsDep) -> Response:
    content, media_type = api_metrics.render()
    return Response(content, media_type=media_type)
