"""The MLflow side of modeling: log and register candidates, find and move ``production``.

Every trained candidate becomes a new version of the registered model, tagged with the data it
saw. The serving model is the version under the alias (aliases, not the deprecated stages).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.utils import environment as mlflow_environment

from mlops_platform.pipelines.features import HIGH_CARDINALITY, LOW_CARDINALITY, NUMERIC
from mlops_platform.schema import FEATURES
from mlops_platform.settings import Settings

log = logging.getLogger(__name__)

# skops looks every scipy ufunc up by name in every loaded module when it is first imported (by
# MLflow saving or loading a model). In an Airflow task process those lookups reach Airflow's
# deprecated-import shims (airflow.utils.timezone and others), which warn for any name asked,
# found or not: ~1,160 lines in each modeling task's log. Neither library is ours to change and
# the lookups are harmless, so exactly those are ignored: FutureWarning (Airflow's
# DeprecatedImportWarning) raised from skops' lookup module. skops is imported after this,
# lazily, so the filter is in place before its first import.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"skops\.io\._utils$")

# Types a model of ours may contain beyond skops' defaults, stated rather than found by a dump of
# the model before MLflow dumps it again (tests/unit/test_model_code.py dumps every family and
# checks it holds no other). MLflow loads the saved file back with exactly these trusted, so a
# model holding any other type still fails to register, as it did when they were found.
TRUSTED_TYPES: tuple[str, ...] = (
    "mlops_platform.pipelines.features.IdCounts",
    "mlops_platform.pipelines.features.ListingFeatureBuilder",
    "mlops_platform.pipelines.linear_trees.LinearTrees",
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.model_selection._split.KFold",
)


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    run_id: str
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def client(settings: Settings) -> MlflowClient:
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return MlflowClient(tracking_uri=settings.mlflow_tracking_uri)


def production(settings: Settings) -> ModelVersion | None:
    """The version under the serving alias, or None when nothing was promoted yet."""
    try:
        found = client(settings).get_model_version_by_alias(
            settings.model_name, settings.model_alias
        )
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return ModelVersion(found.name, found.version, found.run_id, dict(found.tags))


def find_version(settings: Settings, data_label: str) -> ModelVersion | None:
    """The candidate already registered for this data version (a retried task reuses it)."""
    found = client(settings).search_model_versions(
        f"name = '{settings.model_name}' and tags.data_version = '{data_label}'"
    )
    if not found:
        return None
    newest = max(found, key=lambda v: int(v.version))
    return ModelVersion(newest.name, newest.version, newest.run_id, dict(newest.tags))


def pip_requirements() -> list[str]:
    """What serving the model needs, pinned to the versions installed here. Stated, not inferred:
    inference costs ~3 s per model and picks up dev tools. Serving also needs this package (the
    feature builder), which its image installs."""
    return mlflow.sklearn.get_default_pip_requirements(include_skops=True)


@contextmanager
def requirements_not_rechecked() -> Iterator[None]:
    """Saving a model with explicit requirements skips MLflow's inference of them, but MLflow
    still checks each against the installed packages, and that check first maps every installed
    distribution to its modules (``importlib.metadata.packages_distributions``: 1.3–2.4 s here,
    no option turns it off; MLflow 3.17, ``utils/environment.py: _process_pip_requirements``).
    Its only outcome is a warning, and :func:`pip_requirements` pins exactly what is installed
    (MLflow adds its own pin, also the installed version), so it cannot warn: it is skipped
    while saving. If a later MLflow moves the function, nothing is skipped."""
    name = "warn_dependency_requirement_mismatches"
    original = getattr(mlflow_environment, name, None)
    if original is None:
        yield
        return
    setattr(mlflow_environment, name, lambda requirements: None)
    try:
        yield
    finally:
        setattr(mlflow_environment, name, original)


def register(
    settings: Settings,
    model: Any,
    *,
    family: str,
    example: pd.DataFrame,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
) -> ModelVersion:
    """Log the fitted model (signature, feature lists) and register a version, tagged at its
    creation (a search by data version never sees it untagged)."""
    mlflow_client = client(settings)
    mlflow.set_experiment(settings.experiment_name)
    inputs = example[list(FEATURES)].head(5)
    version_tags = {**{key: str(value) for key, value in tags.items()}, "family": family}
    with mlflow.start_run(run_name=f"{family}-{tags['data_version']}", tags=tags) as run:
        now = int(time.time() * 1000)
        mlflow_client.log_batch(
            run.info.run_id,
            metrics=[Metric(key, float(value), now, 0) for key, value in metrics.items()],
            params=[Param(key, str(value)) for key, value in {"family": family, **params}.items()],
        )
        mlflow.log_dict(
            {
                "inputs": list(FEATURES),
                "numeric": list(NUMERIC),
                "low_cardinality": list(LOW_CARDINALITY),
                "high_cardinality": list(HIGH_CARDINALITY),
            },
            "features.json",
        )
        # The model is serialised once, by MLflow. No input example: with one, MLflow loads the
        # saved model back and predicts it to validate serving (and this cannot be turned off
        # through log_model); evaluate loads and scores the registered model anyway.
        with requirements_not_rechecked():
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(inputs, model.predict(inputs)),
                registered_model_name=settings.model_name,
                serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
                skops_trusted_types=list(TRUSTED_TYPES),
                pip_requirements=pip_requirements(),
                tags=version_tags,  # set on the logged model and on the new version
            )
    version = str(info.registered_model_version)
    log.info(
        "registered %s version %s (%s, run %s)",
        settings.model_name,
        version,
        family,
        run.info.run_id,
    )
    return ModelVersion(settings.model_name, version, run.info.run_id, version_tags)


def load(settings: Settings, version: ModelVersion) -> Any:
    client(settings)
    return mlflow.sklearn.load_model(version.uri)


def set_production(settings: Settings, version: str) -> None:
    """Move the alias: one metadata update; readers see the old or the new version, never none."""
    client(settings).set_registered_model_alias(settings.model_name, settings.model_alias, version)
