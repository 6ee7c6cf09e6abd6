"""The data-source API: serves a source's batches one by one per (group, day), as DESIGN.md says.

``GET /data`` hands out the next batch of a group and day; after the last one it answers 400,
which is the normal end of a collection run. ``GET /restart_data_generation`` starts a group
and day over. Counters live in memory: a restarted server serves every batch again.
Bodies are written with ``allow_nan=True`` because real sources send bare ``NaN`` tokens and
clients must cope with them.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Response

from mlops_platform.datasource.simulator import BatchSource, source_from_settings
from mlops_platform.settings import Weekday

if TYPE_CHECKING:
    from mlops_platform.settings import Settings

GroupNumber = Annotated[int, Query(ge=1, description="Group whose batches are served.")]
Day = Annotated[Weekday, Query(description="Weekday name, e.g. Wednesday.")]

_END_OF_DATA = {
    400: {
        "description": "Every batch of this group and day was already served.",
        "content": {"application/json": {"example": {"detail": "All 10 batches ..."}}},
    }
}


class _Counters:
    """Batches served per (group, day); one lock per key so groups do not wait for each other."""

    def __init__(self) -> None:
        self._served: dict[tuple[int, str], int] = {}
        self._locks: dict[tuple[int, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def lock(self, key: tuple[int, str]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def served(self, key: tuple[int, str]) -> int:
        return self._served.get(key, 0)

    def mark_served(self, key: tuple[int, str], batch_number: int) -> None:
        self._served[key] = batch_number

    def reset(self, key: tuple[int, str]) -> None:
        with self.lock(key):
            self._served.pop(key, None)


def _json(payload: dict[str, Any]) -> Response:
    """JSON with NaN tokens allowed, the way the sources this platform reads send it."""
    body = json.dumps(payload, allow_nan=True, separators=(",", ":"))
    return Response(content=body, media_type="application/json")


def _all_collected(group_number: int, day: str, total: int) -> HTTPException:
    return HTTPException(
        status_code=400,
        detail=(
            f"All {total} batches for group {group_number} on {day} were collected. "
            f"To collect them again call GET /restart_data_generation"
            f"?group_number={group_number}&day={day}"
        ),
    )


def create_app(source: BatchSource) -> FastAPI:
    """The data-source API over any :class:`BatchSource` (synthetic or CSV)."""
    app = FastAPI(
        title="Data-source API",
        description="USA real-estate listings in batches per group and weekday.",
        version="1.0",
    )
    counters = _Counters()

    @app.get("/data", responses=_END_OF_DATA)
    def data(group_number: GroupNumber, day: Day) -> Response:
        """The next batch of this group and day; 400 once all of them were served."""
        key = (group_number, day)
        with counters.lock(key):
            total = source.batch_count(group_number, day)
            batch_number = counters.served(key) + 1
            if batch_number > total:
                raise _all_collected(group_number, day, total)
            records = source.batch(group_number, day, batch_number)
            counters.mark_served(key, batch_number)  # only once the batch exists: none is lost
        payload = {
            "group_number": group_number,
            "day": day,
            "batch_number": batch_number,
            "data": records,
        }
        return _json(payload)

    @app.get("/restart_data_generation")
    def restart(group_number: GroupNumber, day: Day) -> dict[str, Any]:
        """Start this group and day over: the next ``/data`` call serves batch 1."""
        counters.reset((group_number, day))
        return {
            "group_number": group_number,
            "day": day,
            "detail": f"Data generation for group {group_number} on {day} restarted at batch 1.",
        }

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    return app


def app_from_settings(settings: Settings) -> FastAPI:
    """The API over the source the settings name (``MLOPS_SIM_*``)."""
    return create_app(source_from_settings(settings))
