"""Tell the inference API that production moved, then check that it serves the promoted version.

``notify`` calls ``POST /hooks/model_update`` with the bearer token; the API reloads inside the
request and answers with the version it serves. ``verify`` reads the version under the serving
alias from the registry and asks ``GET /model`` which version is loaded: they must match. Both are
safe to repeat: a second call finds the model already loaded ("unchanged") and changes nothing.
A failure raises :class:`PublishError` with what to do next; the caller (Airflow) retries.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from mlops_platform.pipelines import registry
from mlops_platform.settings import Settings

log = logging.getLogger(__name__)

HOOK_PATH = "/hooks/model_update"
MODEL_PATH = "/model"


class PublishError(RuntimeError):
    """The API did not take, or does not serve, the production model; the message says why."""


def notify(settings: Settings) -> dict[str, Any]:
    """``POST /hooks/model_update``; returns the API's answer (outcome, version, previous)."""
    url = f"{settings.api_url}{HOOK_PATH}"
    try:
        response = httpx.post(
            url,
            headers={"Authorization": f"Bearer {settings.api_token}"},
            timeout=settings.http_timeout_s,
        )
    except httpx.TransportError as error:
        raise PublishError(
            f"inference API unreachable at {url} ({error}); check MLOPS_API_URL and that it runs"
        ) from error
    if response.status_code == 401:
        raise PublishError(f"{url} refused the token: MLOPS_API_TOKEN must match the API's")
    if response.status_code != 200:
        raise PublishError(f"{url} answered HTTP {response.status_code}: {response.text[:300]}")
    answer = response.json()
    log.info(
        "inference API %s: model %s (was %s)",
        answer["outcome"],
        answer["version"],
        answer["previous"],
    )
    return answer


def verify(settings: Settings) -> dict[str, Any]:
    """The API serves the version under the registry alias; raises PublishError otherwise."""
    production = registry.production(settings)
    if production is None:
        raise PublishError(
            f"no version of {settings.model_name!r} is under alias {settings.model_alias!r}"
        )
    url = f"{settings.api_url}{MODEL_PATH}"
    try:
        response = httpx.get(url, timeout=settings.http_timeout_s)
    except httpx.TransportError as error:
        raise PublishError(f"inference API unreachable at {url} ({error})") from error
    if response.status_code != 200:
        raise PublishError(f"{url} answered HTTP {response.status_code}: {response.text[:300]}")
    served = response.json()["version"]
    if served != production.version:
        raise PublishError(
            f"the API serves version {served} but {settings.model_alias!r} is version "
            f"{production.version}; call {HOOK_PATH} again or check the API's log"
        )
    log.info("inference API serves %s version %s", settings.model_name, served)
    return {"model": settings.model_name, "version": served}
