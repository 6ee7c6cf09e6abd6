"""``create_app(settings)``: the inference API, its model holder, alias poll and log writer.

Everything a route needs is one :class:`~mlops_platform.serving.state.ApiState` on
``app.state.api``, reaching routes through :mod:`~mlops_platform.serving.routes.deps`; settings
come in once, here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import multiprocess

from mlops_platform.serving.inference_log import InferenceLog
from mlops_platform.serving.limits import BodyLimit
from mlops_platform.serving.metrics import MULTIPROC_ENV, ApiMetrics, MetricsMiddleware
from mlops_platform.serving.routes import ROUTERS
from mlops_platform.serving.state import ApiState, ModelHolder
from mlops_platform.settings import Settings, load_settings

log = logging.getLogger(__name__)

# Start-up waits this long for the first load, then serves (503 on /predict) while it finishes:
# an unreachable MLflow must not keep the process from answering /healthz.
STARTUP_LOAD_WAIT_S = 20.0


async def poll_alias(holder: ModelHolder, interval_s: float) -> None:
    """Every ``interval_s``, reload when the alias moved (hooks can be missed; this cannot)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            result = await asyncio.to_thread(holder.refresh)
        except Exception:  # refresh handles its own failures; this keeps the poll alive anyway
            log.exception("alias poll failed")
            continue
        if result.outcome == "loaded":
            log.info("alias poll: %s", result.detail)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    api: ApiState = app.state.api
    settings, holder, inference_log = api.settings, api.holder, api.inference_log
    await inference_log.start()
    first = asyncio.create_task(asyncio.to_thread(holder.refresh))
    done, _ = await asyncio.wait({first}, timeout=STARTUP_LOAD_WAIT_S)
    if not done:
        log.warning("the production model is still loading; serving 503 until it is ready")
    poll = asyncio.create_task(poll_alias(holder, settings.model_poll_interval_s))
    try:
        yield
    finally:
        poll.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poll
        await inference_log.close()
        if os.environ.get(MULTIPROC_ENV):
            multiprocess.mark_process_dead(os.getpid())


def create_app(settings: Settings | None = None) -> FastAPI:
    """The inference API; nothing is loaded until the app starts (its lifespan)."""
    settings = settings or load_settings()
    metrics = ApiMetrics()
    app = FastAPI(
        title="House price inference API",
        version="1.0.0",
        description=(
            f"Serves `models:/{settings.model_name}@{settings.model_alias}` from MLflow: "
            "predictions, SHAP explanations, model details; every prediction is logged to RAW."
        ),
        lifespan=_lifespan,
    )
    app.state.api = ApiState(
        settings=settings,
        metrics=metrics,
        holder=ModelHolder(settings, metrics),
        inference_log=InferenceLog(
            settings.raw_url,
            metrics,
            queue_size=settings.inference_log_queue_size,
            batch_size=settings.inference_log_batch_size,
            flush_s=settings.inference_log_flush_s,
        ),
        explain_slots=asyncio.Semaphore(settings.explain_concurrency),
    )
    # Inside the metrics middleware, so refused bodies are counted as the 413s they are.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    for router in ROUTERS:
        app.include_router(router)
    return app
