"""The modeling pipeline as task functions: decide → train → evaluate → promote → explain → record.

Each task takes settings and plain values (the previous tasks' dicts) and returns a plain dict,
so Airflow can pass them between tasks and the CLI can call them in a row. A data version is
decided once: re-running any task, or the whole pipeline, reuses what was already done (the
registered candidate, the history row) instead of doing it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric
from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import SQLAlchemyError

from mlops_platform.pipelines import drift, registry
from mlops_platform.pipelines.dataset import data_version, first_batch_id, load_listings
from mlops_platform.pipelines.evaluate import evaluate as score
from mlops_platform.pipelines.evaluate import regression_metrics
from mlops_platform.pipelines.evidence import location_median, original_glm, paired_gains
from mlops_platform.pipelines.explain import BACKGROUND_PATH, load_background
from mlops_platform.pipelines.explain import explain as shap_explain
from mlops_platform.pipelines.promote import judge
from mlops_platform.pipelines.sample import at_most
from mlops_platform.pipelines.train import choose, fit_candidates, fit_family
from mlops_platform.schema import FEATURES, TARGET
from mlops_platform.settings import Settings
from mlops_platform.storage.engine import make_engine
from mlops_platform.storage.tables import model_history

log = logging.getLogger(__name__)

# The first model's original-GLM baseline is fitted on at most this many train rows (a fixed
# spread sample). Its ~60 coefficients are pinned down long before that: at 778k rows fitting
# it on everything took ~10 s of the evaluation and moved no decision, the first model beats it
# by ~65 % with the bootstrap's lower bound a point below.
BASELINE_ROWS = 100_000


def _history_row_in(conn: Connection, label: str) -> dict[str, Any] | None:
    row = (
        conn.execute(select(model_history).where(model_history.c.data_version == label))
        .mappings()
        .first()
    )
    return None if row is None else {**row, "decided_at": row["decided_at"].isoformat()}


def _history_row(clean: Engine, label: str) -> dict[str, Any] | None:
    with clean.connect() as conn:
        return _history_row_in(conn, label)


# Every decision is committed (alias moved, history row written) holding this PostgreSQL advisory
# lock on CLEAN, so two runs (Airflow and the CLI, or two Airflow runs) cannot interleave one.
_DECISION_LOCK = "mlops_platform.model_decision"


def _lock_decisions(conn: Connection) -> None:
    """Wait for, then hold until the transaction ends, the one lock decisions are made under."""
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": _DECISION_LOCK})


@contextmanager
def _training(clean_url: str, label: str) -> Iterator[None]:
    """Held while a data version's candidate is looked up, trained and registered: a second run
    for the same data (Airflow and the CLI at once) waits, then finds the first one's version
    instead of registering a second that no decision would record. A session lock, so a long fit
    holds no transaction open; PostgreSQL drops it with the connection if either side dies."""
    engine = make_engine(clean_url)
    key = {"key": f"{_DECISION_LOCK}.train:{label}"}
    try:
        with engine.connect() as conn:
            if not conn.execute(text("SELECT pg_try_advisory_lock(hashtext(:key))"), key).scalar():
                # Said, because the wait lasts as long as the other run (its retries included).
                log.info("%s: another run is training this data; waiting for it to end", label)
                conn.execute(text("SELECT pg_advisory_lock(hashtext(:key))"), key)
            conn.commit()
            try:
                yield
            finally:
                with suppress(SQLAlchemyError):  # a lost connection has released it already
                    conn.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), key)
                    conn.commit()
    finally:
        engine.dispose()


def _newer_decided(conn: Connection, settings: Settings, max_batch_id: int) -> str | None:
    """The data version newer than ``max_batch_id`` already decided, or whose model serves.

    Data is decided in order: a run that carries older data (an Airflow run decided before a
    newer one finished) must not train, promote or be recorded as if it were the newest.
    """
    newest = conn.execute(
        select(model_history.c.data_version, model_history.c.max_batch_id)
        .order_by(model_history.c.max_batch_id.desc())
        .limit(1)
    ).first()
    if newest is not None and newest.max_batch_id > max_batch_id:
        return str(newest.data_version)
    production = registry.production(settings)
    served = int(production.tags.get("max_batch_id", -1)) if production else -1
    if production is not None and served > max_batch_id:
        return production.tags.get("data_version") or f"batch-{served}"
    return None


def _superseded_reason(label: str, newer: str) -> str:
    return (
        f"superseded: data {newer} was decided before this run for {label} got here; "
        "an older data version never trains or replaces the model of newer data"
    )


def _evaluation_rows(frame: pd.DataFrame, window: int) -> pd.DataFrame:
    """Test rows of the ``window`` most recent batches: the market as it is now."""
    recent = sorted(frame["batch_id"].unique())[-window:]
    return frame[(frame["split"] == "test") & frame["batch_id"].isin(recent)]


# Models a run's tasks loaded, by (version, run): when the tasks run in a row in one process
# (``run_model_pipeline``: the CLI, the benchmarks), explain scores the model evaluate loaded
# instead of downloading and deserialising it again (~1 s at 100k rows). Under Airflow each task
# is a process of its own and passes nothing: it loads what it needs.
Loaded = dict[tuple[str, str], Any]


def _load(settings: Settings, version: registry.ModelVersion, loaded: Loaded | None) -> Any:
    if loaded is None or not version.run_id:
        return registry.load(settings, version)
    key = (version.version, version.run_id)
    if key not in loaded:
        loaded[key] = registry.load(settings, version)
    return loaded[key]


def decide(settings: Settings, *, loaded: Loaded | None = None) -> dict[str, Any]:
    """Should a new model be trained for the data CLEAN holds now? With reasons."""
    clean = make_engine(settings.clean_url)
    try:
        version = data_version(clean)
        if version is None:
            return {"data_version": None, "retrain": False, "reasons": ["CLEAN holds no rows"]}
        decided = _history_row(clean, version.label)
        if decided is not None:
            log.info("data %s was already decided: %s", version.label, decided["reason"])
            return {
                "data_version": version.label,
                "max_batch_id": version.max_batch_id,
                "retrain": False,
                "already_decided": True,
                "history": decided,
                "reasons": decided["decision_reasons"],
            }
        production = registry.production(settings)
        thresholds = drift.Thresholds(
            settings.drift_psi_threshold,
            settings.error_ratio_threshold,
            settings.retrain_new_rows_ratio,
            settings.min_new_rows,
        )
        if production is None:  # every row is new: only their number is needed, not the rows
            decision = drift.first_model(version.rows)
        else:
            seen = int(production.tags["max_batch_id"])
            reference = load_listings(clean, up_to_batch=seen)
            new = load_listings(clean, after_batch=seen, up_to_batch=version.max_batch_id)
            mae_new = score(_load(settings, production, loaded), new)["mae"] if len(new) else None
            test_mae = production.tags.get("test_mae")
            decision = drift.decide(
                reference,
                new,
                thresholds,
                latest=new[new["batch_id"] == version.max_batch_id],
                production_mae_reference=float(test_mae) if test_mae else None,
                production_mae_new=mae_new,
            )
    finally:
        clean.dispose()
    log.info(
        "decision for %s: %s — %s",
        version.label,
        "retrain" if decision.retrain else "skip",
        "; ".join(decision.reasons),
    )
    result = {
        "data_version": version.label,
        "max_batch_id": version.max_batch_id,
        "production_version": production.version if production else None,
        **decision.to_dict(),
    }
    if production is not None and production.tags.get("train_rows"):
        # What the model in production was trained on (not every row up to its data).
        result["reference_rows"] = int(production.tags["train_rows"])
    return result


def train(settings: Settings, decision: dict[str, Any]) -> dict[str, Any] | None:
    """Fit the configured family (the best of several on validation), register it (once per
    data version)."""
    if not decision.get("retrain"):
        return None
    label = decision["data_version"]
    clean = make_engine(settings.clean_url)
    try:
        with clean.connect() as conn:
            newer = _newer_decided(conn, settings, decision["max_batch_id"])
    finally:
        clean.dispose()
    if newer is not None:
        log.info("%s: not training, %s", label, _superseded_reason(label, newer))
        return None
    with _training(settings.clean_url, label):
        existing = registry.find_version(settings, label)
        if existing is not None:
            log.info("candidate for %s already registered as version %s", label, existing.version)
            return _registered_candidate(existing)
        return _fit_and_register(settings, decision)


def _registered_candidate(version: registry.ModelVersion) -> dict[str, Any]:
    """A candidate an earlier attempt registered, as train hands candidates on."""
    return {
        "version": version.version,
        "run_id": version.run_id,
        "family": version.tags.get("family"),
        "validation": None,
    }


def _fit_and_register(settings: Settings, decision: dict[str, Any]) -> dict[str, Any]:
    label = decision["data_version"]
    started = time.perf_counter()
    clean = make_engine(settings.clean_url)
    try:  # only the train rows: the test rows are for evaluate (at 1M rows they are ~200 MB)
        train_rows = load_listings(clean, up_to_batch=decision["max_batch_id"], split="train")
        first_batch = first_batch_id(clean)
    finally:
        clean.dispose()
    steps = {"load": time.perf_counter() - started}
    seed, half_life = settings.train_seed, settings.recency_half_life
    family, validation = settings.families[0], {}
    if len(settings.families) > 1:
        candidates = fit_candidates(
            train_rows, seed=seed, half_life=half_life, families=settings.families
        )
        family = choose(candidates).family
        validation = {c.family: c.validation for c in candidates}
        steps["compare families"] = time.perf_counter() - started - sum(steps.values())
    model = fit_family(family, train_rows, seed=seed, half_life=half_life)
    steps[f"fit {family}"] = time.perf_counter() - started - sum(steps.values())
    metrics = {
        f"validation_{metric}_{name}": value
        for name, scores in validation.items()
        for metric, value in scores.items()
        if metric in ("mae", "rmse", "r2", "mape")
    }
    version = registry.register(
        settings,
        model,
        family=family,
        example=train_rows,
        params={
            "families": settings.model_families,
            "seed": settings.train_seed,
            "recency_half_life": settings.recency_half_life,
            "train_rows": len(train_rows),
        },
        metrics=metrics,
        tags={
            "data_version": label,
            "max_batch_id": str(decision["max_batch_id"]),
            "train_rows": str(len(train_rows)),
            "first_batch_id": str(first_batch),
        },
    )
    steps["register"] = time.perf_counter() - started - sum(steps.values())
    log.info(
        "%s: version %s (%s) from %d train rows; %s",
        label,
        version.version,
        family,
        len(train_rows),
        ", ".join(f"{step} {seconds:.1f} s" for step, seconds in steps.items()),
    )
    return {
        "version": version.version,
        "run_id": version.run_id,
        "family": family,
        "validation": validation or None,  # None: one family, nothing compared
        "steps": {step: round(seconds, 3) for step, seconds in steps.items()},
    }


def evaluate(
    settings: Settings,
    decision: dict[str, Any],
    candidate: dict[str, Any] | None,
    *,
    loaded: Loaded | None = None,
) -> dict[str, Any] | None:
    """Candidate and current production scored on the same recent test rows, with the evidence
    the promotion needs: the paired gain over production, or for a first model over the naive
    location-median baseline."""
    if candidate is None:
        return None
    clean = make_engine(settings.clean_url)
    try:
        # The market as it is at this decision: the newest test rows CLEAN holds now, which may
        # be newer than the data the candidate was trained on; both models are scored on them.
        newest = data_version(clean)
        upto = max(decision["max_batch_id"], newest.max_batch_id if newest else 0)
        frame = load_listings(clean, up_to_batch=upto)
        rows = _evaluation_rows(frame, settings.eval_window_batches)
        background = shap_sample(frame[frame["split"] == "test"], settings)
        production = registry.production(settings)
        train_rows = None
        if production is None:
            seen = (frame["split"] == "train") & (frame["batch_id"] <= decision["max_batch_id"])
            train_rows = frame[seen]
        del frame
    finally:
        clean.dispose()
    name = settings.model_name
    truth = rows[TARGET].to_numpy()
    challenger = registry.ModelVersion(name, candidate["version"], candidate["run_id"], {})
    predicted = _load(settings, challenger, loaded).predict(rows[list(FEATURES)])
    candidate_metrics = regression_metrics(truth, predicted)
    references: dict[str, Any] = {}
    production_metrics = None
    if production is not None and production.version != candidate["version"]:
        served = _load(settings, production, loaded).predict(rows[list(FEATURES)])
        production_metrics = regression_metrics(truth, served)
        references["production model"] = served
    elif train_rows is not None:
        # A first model must beat the naive answer and the model this platform replaces.
        references["location-median baseline"] = location_median(train_rows, rows)
        references["original GLM"] = original_glm(at_most(train_rows, BASELINE_ROWS), rows)
    gains = paired_gains(truth, predicted, references, confidence=settings.promotion_confidence)
    evidence = {label: gain.to_dict() for label, gain in gains.items()}
    mlflow_client = registry.client(settings)
    mlflow_client.set_model_version_tag(
        name, candidate["version"], "test_mae", f"{candidate_metrics['mae']:.2f}"
    )
    now = int(time.time() * 1000)
    mlflow_client.log_batch(
        candidate["run_id"],
        metrics=[
            Metric(f"test_{metric}", candidate_metrics[metric], now, 0)
            for metric in ("mae", "rmse", "r2", "mape")
        ],
    )
    # The API's /explain needs the background the moment the alias may move (promote, next):
    # written by explain, after promote, it left a new production version unexplainable for
    # the seconds in between (503s under load, tests/reliability/test_load.py).
    log_background(mlflow_client, candidate["run_id"], background)
    return {
        "candidate": candidate_metrics,
        "production": production_metrics,
        "production_version": production.version if production else None,
        "eval_rows": len(rows),
        "evidence": evidence,
    }


def promote(
    settings: Settings,
    decision: dict[str, Any],
    candidate: dict[str, Any] | None,
    evaluation: dict[str, Any] | None,
) -> dict[str, Any]:
    """The decision's commit point, under the decision lock: data older than data already decided
    is superseded; else the alias moves to the candidate only if it wins. The history row is
    written here, in the same lock, so decisions are recorded in data order."""
    if candidate is None or evaluation is None:
        return {"promoted": False, "reason": None}
    label = decision["data_version"]
    clean = make_engine(settings.clean_url)
    try:
        with clean.begin() as conn:
            _lock_decisions(conn)
            done = _history_row_in(conn, label)
            if done is not None:  # a re-run: the decision stands
                return {"promoted": done["promoted"], "reason": done["reason"]}
            newer = _newer_decided(conn, settings, decision["max_batch_id"])
            if newer is not None:
                promotion = {
                    "promoted": False,
                    "reason": _superseded_reason(label, newer),
                    "superseded_by": newer,
                }
            else:
                evaluation = _against_current_production(settings, decision, candidate, evaluation)
                promotion = _judge_and_move(settings, candidate, evaluation)
            _insert_history(conn, _history_values(decision, candidate, evaluation, promotion, None))
    finally:
        clean.dispose()
    log.info("%s, version %s: %s", label, candidate["version"], promotion["reason"])
    return promotion


def _against_current_production(
    settings: Settings,
    decision: dict[str, Any],
    candidate: dict[str, Any],
    evaluation: dict[str, Any],
) -> dict[str, Any]:
    """The evaluation again if production changed since it was made (a run for older data was
    promoted meanwhile): the candidate must beat the model it would replace."""
    current = registry.production(settings)
    current_version = current.version if current else None
    if current_version in (evaluation["production_version"], candidate["version"]):
        return evaluation
    return evaluate(settings, decision, candidate) or evaluation


def _judge_and_move(
    settings: Settings, candidate: dict[str, Any], evaluation: dict[str, Any]
) -> dict[str, Any]:
    if evaluation["production_version"] == candidate["version"]:
        return {"promoted": True, "reason": "already in production"}
    verdict = judge(
        evaluation["candidate"],
        evaluation["production"],
        margin=settings.promotion_margin,
        r2_tolerance=settings.r2_tolerance,
        evidence=evaluation.get("evidence"),
    )
    if verdict.promote:
        registry.set_production(settings, candidate["version"])
        registry.client(settings).set_model_version_tag(
            settings.model_name,
            candidate["version"],
            "promoted_at",
            datetime.now(UTC).isoformat(timespec="seconds"),
        )
    return asdict(verdict) | {"promoted": verdict.promote}


def shap_sample(test: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """The rows SHAP explains and the API's /explain takes as background: a fixed-seed sample of
    the test split (``evaluate`` logs it before the alias can move; ``explain`` reads it back)."""
    size = min(settings.shap_sample_rows, len(test))
    return test.sample(size, random_state=settings.train_seed)


def log_background(client: MlflowClient, run_id: str, rows: pd.DataFrame) -> None:
    """``rows`` as the run's ``shap/background.json``: what the API explains against and
    verifies its compiled path on. Missing values as JSON null."""
    features = rows[list(FEATURES)]
    as_json = features.astype(object).where(features.notna(), None)
    client.log_dict(run_id, {"rows": as_json.to_dict(orient="records")}, BACKGROUND_PATH)


def read_background(settings: Settings, run_id: str) -> pd.DataFrame:
    """The run's background (:func:`log_background`) as the model's raw feature frame."""
    registry.client(settings)  # the tracking URI the artifact is read from
    return load_background(run_id)


def explain(
    settings: Settings, candidate: dict[str, Any] | None, *, loaded: Loaded | None = None
) -> dict[str, Any] | None:
    """Global SHAP importance and per-row values, logged with the candidate's run: of the rows
    ``evaluate`` logged as the background, so the run's importance and the API's /explain are
    against the same rows (a new batch landing in between does not change them)."""
    if candidate is None:
        return None
    sample = read_background(settings, candidate["run_id"])
    model = _load(
        settings,
        registry.ModelVersion(settings.model_name, candidate["version"], candidate["run_id"], {}),
        loaded,
    )
    explanation = shap_explain(model, sample, background=sample)
    importance = explanation.importance()
    registry.client(settings)
    with mlflow.start_run(run_id=candidate["run_id"]):
        mlflow.log_dict({"space": "log(price)", "importance": importance}, "shap/importance.json")
        mlflow.log_dict(
            {
                "base_value": explanation.base_value,
                "features": list(FEATURES),
                "values": explanation.values.round(6).to_numpy().tolist(),
            },
            "shap/values.json",
        )
    return {"shap_uri": f"runs:/{candidate['run_id']}/shap", "importance": importance}


def _history_values(
    decision: dict[str, Any],
    candidate: dict[str, Any] | None,
    evaluation: dict[str, Any] | None,
    promotion: dict[str, Any] | None,
    explanation: dict[str, Any] | None,
) -> dict[str, Any]:
    promoted = bool(promotion and promotion["promoted"])
    if promotion and promotion.get("superseded_by"):
        outcome, reason = "superseded", promotion["reason"]
    elif candidate is None:
        outcome, reason = "skipped", "skipped: " + "; ".join(decision["reasons"])
    else:
        outcome = "promoted" if promoted else "rejected"
        reason = promotion["reason"] if promotion else "not evaluated"
    return {
        "data_version": decision["data_version"],
        "max_batch_id": decision["max_batch_id"],
        "reference_rows": decision["reference_rows"],
        "new_rows": decision["new_rows"],
        "retrain": decision["retrain"],
        "decision_reasons": decision["reasons"],
        "drift": decision["drift"],
        "drifted_features": decision["drifted"],
        "production_version": (evaluation or {}).get("production_version")
        or decision.get("production_version"),
        "production_metrics": (evaluation or {}).get("production"),
        "candidate_version": candidate["version"] if candidate else None,
        "candidate_run_id": candidate["run_id"] if candidate else None,
        "candidate_family": candidate["family"] if candidate else None,
        "candidate_metrics": (evaluation or {}).get("candidate"),
        "validation_metrics": candidate["validation"] if candidate else None,
        "eval_rows": (evaluation or {}).get("eval_rows"),
        "outcome": outcome,
        "promoted": promoted,
        "reason": reason,
        "shap_uri": (explanation or {}).get("shap_uri"),
    }


def _insert_history(conn: Connection, values: dict[str, Any]) -> None:
    """The data version's one row (a second insert for it changes nothing)."""
    conn.execute(
        pg_insert(model_history)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["data_version"])
    )


def record(
    settings: Settings,
    decision: dict[str, Any],
    candidate: dict[str, Any] | None,
    evaluation: dict[str, Any] | None,
    promotion: dict[str, Any] | None,
    explanation: dict[str, Any] | None,
) -> dict[str, Any]:
    """One ``model_history`` row per data version (promote wrote it when there was a candidate:
    here it gets its SHAP link); a second call returns the first row."""
    if decision.get("already_decided"):
        return decision["history"]
    if decision.get("data_version") is None:
        return {"outcome": "skipped", "reason": "; ".join(decision["reasons"])}
    label = decision["data_version"]
    clean = make_engine(settings.clean_url)
    try:
        with clean.begin() as conn:
            _lock_decisions(conn)
            stored = _history_row_in(conn, label)
            if stored is None:  # no candidate was judged: the decision is written now
                newer = _newer_decided(conn, settings, decision["max_batch_id"])
                if newer is not None:
                    reason = _superseded_reason(label, newer)
                    promotion = {"promoted": False, "reason": reason, "superseded_by": newer}
                    candidate = candidate or _registered_before(settings, label)
                _insert_history(
                    conn, _history_values(decision, candidate, evaluation, promotion, explanation)
                )
            elif explanation and stored["shap_uri"] is None:
                conn.execute(
                    update(model_history)
                    .where(model_history.c.data_version == label)
                    .values(shap_uri=explanation["shap_uri"])
                )
        stored = _history_row(clean, label)
    finally:
        clean.dispose()
    log.info("history for %s: %s", label, stored["reason"] if stored else "-")
    return stored or {}


def _registered_before(settings: Settings, label: str) -> dict[str, Any] | None:
    """The version an earlier attempt for ``label`` registered before it died (train does not
    reuse it once newer data is decided), so the superseded row accounts for it: no registered
    version is left without a decision."""
    found = registry.find_version(settings, label)
    if found is None:
        return None
    log.info("%s: version %s of an earlier attempt is superseded", label, found.version)
    return _registered_candidate(found)


def run_model_pipeline(settings: Settings) -> dict[str, Any]:
    """All six tasks in a row, as Airflow runs them; the history row plus each task's seconds."""
    timings: dict[str, float] = {}

    loaded: Loaded = {}  # decide, evaluate and explain share what they load

    def timed(name: str, task: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = task(settings, *args, **kwargs)
        timings[name] = round(time.perf_counter() - start, 3)
        return result

    decision = timed("decide", decide, loaded=loaded)
    candidate = timed("train", train, decision)
    evaluation = timed("evaluate", evaluate, decision, candidate, loaded=loaded)
    promotion = timed("promote", promote, decision, candidate, evaluation)
    explanation = timed("explain", explain, candidate, loaded=loaded)
    row = timed("record", record, decision, candidate, evaluation, promotion, explanation)
    train_steps = candidate.get("steps") if candidate else None
    return {**row, "timings": timings, "train_steps": train_steps}
