"""The API's routers, one per concern; :data:`ROUTERS` is what the app includes."""

from __future__ import annotations

from fastapi import APIRouter

from mlops_platform.serving.routes import explain, health, hooks, metrics, model, predict

ROUTERS: tuple[APIRouter, ...] = (
    predict.router,
    explain.router,
    model.router,
    hooks.router,
    health.router,
    metrics.router,
)
