"""The data pipeline as one call: fetch → ingest → clean, for ``mlops pipeline run data``.

Airflow runs the same three task functions as separate tasks; this is their plain sequence.
"""

from __future__ import annotations

from typing import Any

from mlops_platform.pipelines.clean import clean
from mlops_platform.pipelines.ingest import fetch, ingest
from mlops_platform.settings import Settings


def run_data_pipeline(settings: Settings) -> dict[str, Any]:
    """One batch through the data plane; ``ingest`` is None when the source had no more data."""
    batch = fetch(settings)
    stored = ingest(settings, batch) if batch is not None else None
    cleaned = clean(settings)
    return {"exhausted": batch is None, "ingest": stored, "clean": cleaned}
