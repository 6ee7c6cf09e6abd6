"""Dependencies the routes share: settings, the model holder, the served model, the token.

All are ``async def`` on purpose: FastAPI runs plain ``def`` dependencies in a thread pool,
which costs more per request than what they do.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mlops_platform.serving.inference_log import InferenceLog
from mlops_platform.serving.metrics import ApiMetrics
from mlops_platform.serving.state import LoadedModel, ModelHolder
from mlops_platform.settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_holder(request: Request) -> ModelHolder:
    return request.app.state.holder


async def get_metrics(request: Request) -> ApiMetrics:
    return request.app.state.metrics


async def get_inference_log(request: Request) -> InferenceLog:
    return request.app.state.inference_log


SettingsDep = Annotated[Settings, Depends(get_settings)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
InferenceLogDep = Annotated[InferenceLog, Depends(get_inference_log)]


async def served_model(holder: HolderDep) -> LoadedModel:
    """The model to use for this whole request (read once), or 503 saying why there is none."""
    current = holder.current
    if current is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, holder.unavailable())
    return current


ServedModelDep = Annotated[LoadedModel, Depends(served_model)]

_bearer = HTTPBearer(auto_error=False, description="`settings.api_token` (MLOPS_API_TOKEN).")


async def require_token(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless the request carries ``Authorization: Bearer <MLOPS_API_TOKEN>``."""
    if credentials is None or not hmac.compare_digest(
        credentials.credentials.encode(), settings.api_token.encode()
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid bearer token is required (Authorization: Bearer <MLOPS_API_TOKEN>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
