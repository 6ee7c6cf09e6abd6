"""The model holder: which production version is served, and how a new one replaces it.

Requests read :attr:`ModelHolder.current` once and use that :class:`LoadedModel` to the end, so a
reload never changes a model under a request in flight. A reload builds the complete new
``LoadedModel`` (model, predictor, SHAP background, description) first and then swaps it in with
one reference assignment; when anything fails on the way, the old model keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from mlops_platform.pipelines import registry
from mlops_platform.pipelines.explain import BACKGROUND_PATH, load_background
from mlops_platform.pipelines.features import raw_frame
from mlops_platform.pipelines.registry import ModelVersion
from mlops_platform.schema import EXAMPLE_RECORD
from mlops_platform.serving.body import VerdictMemo
from mlops_platform.serving.compiled import Predictor, build_predictor, frame_records
from mlops_platform.serving.inference_log import InferenceLog
from mlops_platform.serving.metrics import ApiMetrics
from mlops_platform.settings import Settings

log = logging.getLogger(__name__)

_TRAINING_TAGS = ("data_version", "first_batch_id", "max_batch_id", "train_rows")
VERIFY_ROWS = 64  # background rows the compiled path is checked on, besides the edge rows


@dataclass(frozen=True)
class LoadedModel:
    """One production version, ready to serve; never mutated (a change is a new object)."""

    version: ModelVersion
    model: Any
    predictor: Predictor
    background: pd.DataFrame | None
    metrics: dict[str, float]
    loaded_at: str
    ref: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        ref = {"name": self.version.name, "version": self.version.version}
        object.__setattr__(self, "ref", {**ref, "run_id": self.version.run_id})

    def describe(self, alias: str) -> dict[str, Any]:
        """The ``GET /model`` body."""
        tags = self.version.tags
        return {
            **self.ref,
            "alias": alias,
            "family": tags.get("family"),
            "metrics": self.metrics,
            "promoted_at": tags.get("promoted_at"),
            "training_data": {key: _number(tags.get(key)) for key in _TRAINING_TAGS},
            "tags": tags,
            "path": self.predictor.path,
            "path_reason": self.predictor.reason,
            "path_verified_rows": self.predictor.verified_rows,
            "explain_available": self.background is not None,
            "loaded_at": self.loaded_at,
        }


def _number(value: str | None) -> int | str | None:
    return int(value) if value is not None and value.isdigit() else value


def _background(version: ModelVersion) -> pd.DataFrame | None:
    """The rows SHAP compares against; None until the pipeline's evaluate task logged it."""
    try:
        return load_background(version.run_id)
    except Exception as error:  # missing or unreadable: explain waits, predictions do not
        log.warning(
            "no SHAP background for version %s yet (runs:/%s/%s): %s",
            version.version,
            version.run_id,
            BACKGROUND_PATH,
            error,
        )
        return None


def load_version(settings: Settings, version: ModelVersion) -> LoadedModel:
    """Everything a version needs to serve, checked by predicting before it is handed out."""
    model = registry.load(settings, version)
    metrics = registry.client(settings).get_run(version.run_id).data.metrics
    background = _background(version)
    # Verified on the background when it exists, always on the fixed edge rows (build_predictor).
    sample = background.head(VERIFY_ROWS) if background is not None else raw_frame([])
    predictor = build_predictor(model, sample)
    records = frame_records(sample.head(8)) if not sample.empty else [EXAMPLE_RECORD]
    check = predictor.predict_records(records)
    if len(check) != len(records) or not np.all(np.isfinite(check)):
        raise ValueError(f"version {version.version} predicts {check!r} on known-good rows")
    loaded_at = datetime.now(UTC).isoformat(timespec="seconds")
    return LoadedModel(version, model, predictor, background, dict(metrics), loaded_at)


Outcome = Literal["loaded", "unchanged", "failed", "no_model", "unreachable"]


@dataclass(frozen=True)
class RefreshResult:
    """What a refresh did, for the hook's answer and the logs."""

    outcome: Outcome
    version: str | None
    previous: str | None
    detail: str


class ModelHolder:
    """Holds the served model; :meth:`refresh` (hook, poll, start-up) swaps in a new one."""

    def __init__(self, settings: Settings, metrics: ApiMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.current: LoadedModel | None = None
        self.problem = "the production model is still loading"
        # True once the registry said there is no production model at all (a fresh platform):
        # nothing is missing from this replica then, so it may be Ready (see GET /readyz).
        self.no_model_yet = False
        # The version under the alias that could not be loaded, and why, while an older one
        # serves (GET /model says so); None once the alias' version serves.
        self.not_loaded: dict[str, str] | None = None
        self._lock = threading.Lock()  # one load at a time: hook and poll never load twice

    def unavailable(self) -> str:
        """Why there is no model to serve, in words a caller can act on."""
        return self.problem

    def refresh(self, *, force: bool = False) -> RefreshResult:
        """Load the alias' version if it moved (or ``force``); blocking, so run it in a thread."""
        with self._lock:
            return self._refresh(force)

    def _refresh(self, force: bool) -> RefreshResult:
        settings = self.settings
        current = self.current
        previous = current.version.version if current else None
        try:
            target = registry.production(settings)
        except Exception as error:
            log.warning("cannot read alias %r from MLflow: %s", settings.model_alias, error)
            if current is None:
                self.problem = f"MLflow at {settings.mlflow_tracking_uri} is unreachable: {error}"
                self.no_model_yet = False
            return RefreshResult("unreachable", previous, previous, str(error))
        if target is None:
            detail = (
                f"no model is in production yet: alias {settings.model_alias!r} of registered "
                f"model {settings.model_name!r} is not set (the modeling pipeline sets it)"
            )
            if current is None:
                self.problem = detail
                self.no_model_yet = True
            self.not_loaded = None
            return RefreshResult("no_model", previous, previous, detail)
        self.no_model_yet = False
        if current is not None and current.version.version == target.version and not force:
            self._catch_up(current, target)
            self.not_loaded = None  # the alias is back on the served version
            return RefreshResult("unchanged", previous, previous, "already serving this version")
        try:
            loaded = load_version(settings, target)
        except Exception as error:
            self.metrics.reloads.labels(outcome="failed").inc()
            serving = f"still serving version {previous}" if previous else "no model is served"
            log.exception("loading version %s failed; %s", target.version, serving)
            if current is None:
                self.problem = f"version {target.version} could not be loaded: {error}"
            detail = f"version {target.version} could not be loaded ({error}); {serving}"
            at = datetime.now(UTC).isoformat(timespec="seconds")
            self.not_loaded = {"version": target.version, "reason": str(error), "at": at}
            return RefreshResult("failed", previous, previous, detail)
        self.current = loaded  # the swap: one reference assignment
        self.not_loaded = None
        self.metrics.reloads.labels(outcome="ok").inc()
        self._announce(loaded)
        detail = f"serving version {target.version}"
        return RefreshResult("loaded", target.version, previous, detail)

    def _catch_up(self, current: LoadedModel, target: ModelVersion) -> None:
        """Same version, newer facts: tags set after promotion, a SHAP background logged late.
        A late background is also what the compiled path is verified on again."""
        background = current.background if current.background is not None else _background(target)
        if background is not None and current.background is None:
            predictor = build_predictor(current.model, background.head(VERIFY_ROWS))
            self.current = replace(
                current, version=target, background=background, predictor=predictor
            )
            self._announce(self.current)
        elif target.tags != current.version.tags:
            self.current = replace(current, version=target)

    def _announce(self, loaded: LoadedModel) -> None:
        """Metrics and log say which version is served, on which path, and why not compiled."""
        version, predictor = loaded.version, loaded.predictor
        self.metrics.serving(
            version.name, version.version, version.run_id, predictor.path, predictor.mismatch
        )
        log.info(
            "serving %s version %s (%s path%s)",
            version.name,
            version.version,
            predictor.path,
            f": {predictor.reason}" if predictor.reason else "",
        )


@dataclass(frozen=True)
class ApiState:
    """Everything the routes use, built once per app (``app.state.api``)."""

    settings: Settings
    metrics: ApiMetrics
    holder: ModelHolder
    inference_log: InferenceLog
    # /explain's turns (settings.explain_concurrency): SHAP is kept from starving /predict.
    explain_slots: asyncio.Semaphore
    # The /predict body checks' verdicts: pure functions of (field, value, day), kept per app.
    verdicts: VerdictMemo = field(default_factory=VerdictMemo)
