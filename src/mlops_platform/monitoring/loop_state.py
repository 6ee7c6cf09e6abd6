"""The state of the ML loop as the stores record it: newest data, the latest batch's volumes and
rejections, the latest decision, the production model. Read in a few short queries, so metrics
built from it are true after any restart of any process."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, select

from mlops_platform.storage.tables import (
    batches,
    cleaned_batches,
    model_history,
    rejected,
)


@dataclass(frozen=True)
class Decision:
    """One row of clean_data.model_history, reduced to what is watched."""

    data_version: str
    decided_at: float
    outcome: str
    drift_psi: dict[str, float]
    drifted: int
    candidate: dict[str, float] | None
    production: dict[str, float] | None


@dataclass(frozen=True)
class LoopState:
    newest_batch_at: float | None = None
    batches_received: int = 0
    rows_received: int = 0
    latest_batch_rows: dict[str, int] = field(default_factory=dict)  # received/cleaned/rejected
    rows_cleaned: int = 0
    rows_rejected_by_rule: dict[str, int] = field(default_factory=dict)
    latest_batch_rejected_by_rule: dict[str, int] = field(default_factory=dict)
    decisions_by_outcome: dict[str, int] = field(default_factory=dict)
    latest_decision: Decision | None = None
    last_promotion_at: float | None = None
    # The newest promoted decision's candidate: the model in production and its test metrics.
    production_version: str | None = None
    production_metrics: dict[str, float] | None = None


def read_raw(raw: Engine) -> dict[str, Any]:
    with raw.connect() as conn:
        newest, count, rows = conn.execute(
            select(
                func.extract("epoch", func.max(batches.c.received_at)),
                func.count(),
                func.coalesce(func.sum(batches.c.row_count), 0),
            )
        ).one()
    return {
        "newest_batch_at": None if newest is None else float(newest),
        "batches_received": int(count),
        "rows_received": int(rows),
    }


def read_clean(clean: Engine) -> dict[str, Any]:
    with clean.connect() as conn:
        cleaned = conn.execute(select(func.coalesce(func.sum(cleaned_batches.c.cleaned), 0)))
        rows_cleaned = int(cleaned.scalar_one())
        latest = conn.execute(
            select(cleaned_batches).order_by(cleaned_batches.c.batch_id.desc()).limit(1)
        ).first()
        by_rule = dict(
            conn.execute(select(rejected.c.rule, func.count()).group_by(rejected.c.rule)).all()
        )
        latest_by_rule: dict[str, int] = {}
        latest_rows: dict[str, int] = {}
        if latest is not None:
            latest_rows = {
                "received": latest.rows_read,
                "cleaned": latest.cleaned,
                "rejected": latest.rejected,
            }
            latest_by_rule = dict(
                conn.execute(
                    select(rejected.c.rule, func.count())
                    .where(rejected.c.batch_id == latest.batch_id)
                    .group_by(rejected.c.rule)
                ).all()
            )
        outcomes = dict(
            conn.execute(
                select(model_history.c.outcome, func.count()).group_by(model_history.c.outcome)
            ).all()
        )
        last = conn.execute(
            select(model_history).order_by(model_history.c.id.desc()).limit(1)
        ).first()
        promoted = conn.execute(
            select(model_history)
            .where(model_history.c.promoted)
            .order_by(model_history.c.id.desc())
            .limit(1)
        ).first()
    return {
        "rows_cleaned": rows_cleaned,
        "latest_batch_rows": latest_rows,
        "rows_rejected_by_rule": {rule: int(n) for rule, n in by_rule.items()},
        "latest_batch_rejected_by_rule": {rule: int(n) for rule, n in latest_by_rule.items()},
        "decisions_by_outcome": {outcome: int(n) for outcome, n in outcomes.items()},
        "latest_decision": None if last is None else _decision(last),
        "last_promotion_at": None if promoted is None else promoted.decided_at.timestamp(),
        "production_version": None if promoted is None else promoted.candidate_version,
        "production_metrics": None if promoted is None else _numbers(promoted.candidate_metrics),
    }


def _decision(row: Any) -> Decision:
    drift = row.drift or {}
    return Decision(
        data_version=row.data_version,
        decided_at=row.decided_at.timestamp(),
        outcome=row.outcome,
        drift_psi={name: float(values.get("psi", 0.0)) for name, values in drift.items()},
        drifted=len(row.drifted_features or {}),
        candidate=_numbers(row.candidate_metrics),
        production=_numbers(row.production_metrics),
    )


def _numbers(metrics: dict[str, Any] | None) -> dict[str, float] | None:
    if not metrics:
        return None
    return {name: float(value) for name, value in metrics.items() if value is not None}


def read_loop(raw: Engine, clean: Engine) -> LoopState:
    """Everything at once (RAW and CLEAN may be two databases, or one)."""
    return LoopState(**read_raw(raw), **read_clean(clean))
