"""Client of the data-source API (the simulator or any real API of the same shape).

Numbers are kept as the exact JSON text the source sent (``3.0`` stays ``"3.0"``, ``NaN`` stays
``"NaN"``), because RAW stores records losslessly; typing happens later, in cleaning.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError
from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from mlops_platform.settings import Settings

log = logging.getLogger(__name__)


class DataSourceError(RuntimeError):
    """The data source failed or answered something we cannot use; the message says what."""


class _ServerError(Exception):
    """A 5xx answer: worth retrying."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}: {response.text[:200]}")


@dataclass(frozen=True)
class Batch:
    """One batch as received. ``records`` hold the values' JSON text as sent.

    ``sha256`` identifies the payload, so a batch sent twice is recognised. The client takes it
    from the bytes received; :meth:`of` computes it for batches built in code.
    """

    source: str
    group_number: int
    day: str
    batch_number: int
    records: list[dict[str, Any]]
    sha256: str

    @classmethod
    def of(
        cls,
        source: str,
        group_number: int,
        day: str,
        batch_number: int,
        records: list[dict[str, Any]],
    ) -> Batch:
        """A batch with the hash of its canonical JSON payload."""
        payload = {
            "group_number": group_number,
            "day": day,
            "batch_number": batch_number,
            "data": records,
        }
        return cls(source, group_number, day, batch_number, records, payload_sha256(payload))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Batch:
        return cls(**value)


@dataclass(frozen=True)
class Exhausted:
    """The source has served every batch for this group and day (its normal end, a 400)."""

    group_number: int
    day: str
    message: str


class _Envelope(BaseModel):
    group_number: int
    day: str
    batch_number: int
    data: list[Any]


def payload_sha256(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, allow_nan=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _parse_json(text: str) -> Any:
    return json.loads(text, parse_float=str, parse_int=str, parse_constant=str)


def parse_batch(body: str, source: str, group_number: int, day: str) -> Batch:
    """Validate a ``/data`` answer; raise DataSourceError saying exactly what is wrong."""
    try:
        document = _parse_json(body)
    except ValueError as error:
        raise DataSourceError(
            f"data source answered non-JSON: {error}; body starts {body[:80]!r}"
        ) from None
    except RecursionError:  # arrays or objects nested thousands deep: no listing looks like it
        raise DataSourceError(
            f"data source answered JSON nested too deeply to read; body starts {body[:80]!r}"
        ) from None
    if not isinstance(document, dict):
        raise DataSourceError(f"data source answered a {type(document).__name__}, not an object")
    try:
        envelope = _Envelope.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors(include_url=False)
        )
        raise DataSourceError(f"data source answer is malformed: {problems}") from None
    for index, record in enumerate(envelope.data):
        if not isinstance(record, dict):
            raise DataSourceError(
                f"data source answer is malformed: data[{index}] is a "
                f"{type(record).__name__}, not a record object"
            )
    if (envelope.group_number, envelope.day) != (group_number, day):
        raise DataSourceError(
            f"data source answered for group {envelope.group_number}/{envelope.day}, "
            f"but group {group_number}/{day} was asked for"
        )
    return Batch(
        source,
        envelope.group_number,
        envelope.day,
        envelope.batch_number,
        envelope.data,
        hashlib.sha256(body.encode()).hexdigest(),
    )


def _transient(error: BaseException) -> bool:
    return isinstance(error, httpx.TransportError | _ServerError)


class DataSourceClient:
    """Fetches batches with timeouts and retries (connection errors, 5xx) with backoff."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 30.0,
        attempts: int = 5,
        backoff_s: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, transport=transport)
        self._retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=backoff_s, max=30),
            retry=retry_if_exception(_transient),
            before_sleep=before_sleep_log(log, logging.WARNING),
            reraise=True,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> DataSourceClient:
        return cls(
            settings.datasource_url,
            timeout_s=settings.http_timeout_s,
            attempts=settings.http_retries,
            backoff_s=settings.http_backoff_s,
        )

    def __enter__(self) -> DataSourceClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, params: dict[str, Any]) -> httpx.Response:
        def attempt() -> httpx.Response:
            response = self._http.get(path, params=params)
            if response.status_code >= 500:
                raise _ServerError(response)
            return response

        try:
            return self._retrying(attempt)
        except (httpx.TransportError, _ServerError) as error:
            raise DataSourceError(
                f"data source {self.base_url} failed after {self._retrying.stop.max_attempt_number}"
                f" attempts ({type(error).__name__}: {error}); check that it is running and that"
                " MLOPS_DATASOURCE_URL points at it"
            ) from error

    def fetch(self, group_number: int, day: str) -> Batch | Exhausted:
        """The next batch, or :class:`Exhausted` when the source has no more for this group/day."""
        params = {"group_number": group_number, "day": day}
        response = self._get("/data", params)
        if response.status_code == 400:
            return Exhausted(group_number, day, _detail(response))
        if response.status_code != 200:
            raise DataSourceError(
                f"data source refused /data for group {group_number}/{day}: "
                f"HTTP {response.status_code} {_detail(response)}"
            )
        try:
            return parse_batch(response.text, self.base_url, group_number, day)
        except DataSourceError as error:  # not retried: each /data call hands out the next batch
            raise DataSourceError(f"{error} (GET {self.base_url}/data)") from None

    def restart(self, group_number: int, day: str) -> None:
        """Ask the source to serve this group's batches again from the first."""
        response = self._get("/restart_data_generation", {"group_number": group_number, "day": day})
        if response.status_code != 200:
            raise DataSourceError(
                f"data source refused restart: HTTP {response.status_code} {_detail(response)}"
            )


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)
