"""`mlops demo`: the whole lifecycle, headless, in a temporary state folder — the quickest proof
that the platform works. Services start on free ports (nothing of a running `mlops up` is
touched), every simulator batch goes through the pipelines directly (not via the scheduler, for
speed), the API serves the promoted model and prices held-out listings, and everything stops."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from mlops_platform.datasource.simulator import SimulatorConfig, generate_batch
from mlops_platform.local import platform
from mlops_platform.local.quiet import quiet
from mlops_platform.pipelines import publish
from mlops_platform.pipelines.data import run_data_pipeline
from mlops_platform.pipelines.modeling import run_model_pipeline
from mlops_platform.schema import FEATURES, Listing
from mlops_platform.settings import Settings

Say = Callable[[str], None]
HELD_OUT_SEED_OFFSET = 1_000  # listings no batch contains: a different simulator seed


def held_out(settings: Settings, rows: int = 200) -> list[Listing]:
    """Clean listings of the newest regime that no batch served (another seed)."""
    config = SimulatorConfig(
        batches=settings.sim_batches,
        batch_size=max(rows * 2, 100),
        seed=settings.sim_seed + HELD_OUT_SEED_OFFSET,
        drift_at=settings.sim_drift_at,
        drift_strength=settings.sim_drift_strength,
        dirty_rate=0.0,
    )
    found = []
    for record in generate_batch(config, settings.group_number, settings.day, settings.sim_batches):
        try:
            found.append(Listing(**record))
        except ValueError:
            continue
    return found[:rows]


def price_held_out(settings: Settings, listings: list[Listing]) -> dict[str, Any]:
    """The API's predictions for ``listings``, and their error against the true prices."""
    records = [listing.model_dump(mode="json", include=set(FEATURES)) for listing in listings]
    response = httpx.post(f"{settings.api_url}/predict", json=records, timeout=60)
    response.raise_for_status()
    body = response.json()
    errors = [
        abs(predicted - listing.price)
        for predicted, listing in zip(body["predictions"], listings, strict=True)
    ]
    return {
        "listings": len(listings),
        "mae": sum(errors) / len(errors),
        "version": body["model"]["version"],
    }


def drive(settings: Settings, say: Say) -> dict[str, Any]:
    """Every batch through data → modeling (→ the API's hook on a promotion), in order; the
    pipelines' own output goes to logs/pipelines.log in the state folder."""
    batches, history = [], []
    log = platform.service(settings, "pipelines").log_file
    while True:
        with quiet(log):
            data = run_data_pipeline(settings)
            if data["exhausted"]:
                break
            model = run_model_pipeline(settings)
            if model["outcome"] == "promoted":
                publish.notify(settings)
        batches.append({"ingest": data["ingest"], "clean": data["clean"]})
        history.append(model)
        number = data["ingest"]["batch_number"]
        say(f"batch {number}: {model['outcome']} — {model['reason']}")
    return {"batches": batches, "history": history}


def run_demo(settings: Settings, say: Say, keep: Path | None = None) -> dict[str, Any]:
    """Start, drive, predict, stop. ``keep``: use (and keep) this state folder instead of a
    temporary one."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mlops-demo-") as folder:
        state_dir = keep or Path(folder) / "state"
        demo = platform.on_free_ports(settings.replace(state_dir=state_dir))  # secrets included
        try:
            platform.up(
                demo,
                services=platform.DEMO,
                progress=lambda name, state, took: (
                    state != "starting" and say(f"{name}: {state} {took}".rstrip())
                ),
            )
            driven = drive(demo, say)
            if not any(h["outcome"] == "promoted" for h in driven["history"]):
                raise platform.PlatformError("no model was promoted: the demo cannot predict")
            predictions = price_held_out(demo, held_out(demo))
        finally:
            platform.down(demo)
    return driven | {"predictions": predictions, "seconds": time.monotonic() - started}


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """Counts for the printed summary (and the tests)."""
    cleaned = [b["clean"] for b in result["batches"]]
    history = result["history"]
    return {
        "batches": len(result["batches"]),
        "rows_received": sum(b["ingest"]["rows"] for b in result["batches"]),
        "rows_cleaned": sum(c.get("cleaned", 0) for c in cleaned),
        "rows_repaired": sum(c.get("repaired", 0) for c in cleaned),
        "rows_rejected": sum(c.get("rejected", 0) for c in cleaned),
        "trained": sum(h.get("candidate_version") is not None for h in history),
        "promoted": sum(h["outcome"] == "promoted" for h in history),
        "rejected": sum(h["outcome"] == "rejected" for h in history),
        "skipped": sum(h["outcome"] == "skipped" for h in history),
        "production_version": result["predictions"]["version"],
        "api_mae": result["predictions"]["mae"],
        "seconds": result["seconds"],
    }
