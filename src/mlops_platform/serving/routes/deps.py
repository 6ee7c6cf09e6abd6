"""Dependencies the routes share: the app's state (settings, model holder, log, metrics), the
served model and the hook's token.

All are ``async def`` and shallow on purpose: FastAPI runs plain ``def`` dependencies in a thread
pool, and each level of nesting costs a few microseconds per request on the hot path.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mlops_platform.serving.state import ApiState, LoadedModel


async def get_api(request: Request) -> ApiState:
    return request.app.state.api


ApiDep = Annotated[ApiState, Depends(get_api)]


def current_model(api: ApiState) -> LoadedModel:
    """The model for this whole request (read once), or 503 saying why there is none."""
    current = api.holder.current
    if current is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, api.holder.unavailable())
    return current


async def served_model(request: Request) -> LoadedModel:
    return current_model(request.app.state.api)


ServedModelDep = Annotated[LoadedModel, Depends(served_model)]

_bearer = HTTPBearer(auto_error=False, description="`settings.api_token` (MLOPS_API_TOKEN).")


async def require_token(
    api: ApiDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless the request carries ``Authorization: Bearer <MLOPS_API_TOKEN>``."""
    if not api.settings.api_token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "the hook is off: this API has no token (set MLOPS_API_TOKEN)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if credentials is None or not hmac.compare_digest(
        credentials.credentials.encode(), api.settings.api_token.encode()
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid bearer token is required (Authorization: Bearer <MLOPS_API_TOKEN>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
