"""The data-source client: retries what is transient, stops cleanly at 400, rejects bad answers.

The simulator is served for real (uvicorn on loopback). Connection failures are real too (a port
nobody listens on until the server starts). Only the 5xx fault uses a fake: ``FlakyUpstream``
answers 503 before forwarding to the real simulator, because the simulator never fails by itself.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Response
from fastapi.testclient import TestClient

from mlops_platform.datasource.app import create_app
from mlops_platform.datasource.client import (
    Batch,
    DataSourceClient,
    DataSourceError,
    Exhausted,
    parse_batch,
)
from mlops_platform.datasource.simulator import SimulatorConfig, SyntheticSource
from mlops_platform.local.postgres import free_port
from tests.support import serve

CONFIG = SimulatorConfig(batches=3, batch_size=40, seed=3)


def _client(url: str, **options: Any) -> DataSourceClient:
    return DataSourceClient(url, **{"timeout_s": 5, "attempts": 4, "backoff_s": 0.01, **options})


def test_fetches_every_batch_then_reports_exhausted() -> None:
    with serve(create_app(SyntheticSource(CONFIG))) as url, _client(url) as client:
        batches = [client.fetch(2, "Tuesday") for _ in range(3)]
        end = client.fetch(2, "Tuesday")
        client.restart(2, "Tuesday")
        again = client.fetch(2, "Tuesday")
    assert [b.batch_number for b in batches if isinstance(b, Batch)] == [1, 2, 3]
    assert all(len(b.records) == 40 for b in batches if isinstance(b, Batch))
    assert isinstance(end, Exhausted)
    assert "restart" in end.message
    assert isinstance(again, Batch)
    assert again.sha256 == batches[0].sha256


def test_numbers_are_kept_as_the_text_sent() -> None:
    body = '{"group_number": 1, "day": "Monday", "batch_number": 4, "data": '
    body += '[{"price": 105000.0, "bed": NaN, "zip_code": 601, "city": "x", "bath": 1e2}]}'
    batch = parse_batch(body, "src", 1, "Monday")
    assert batch.batch_number == 4
    assert batch.records == [
        {"price": "105000.0", "bed": "NaN", "zip_code": "601", "city": "x", "bath": "1e2"}
    ]


def test_connection_errors_are_retried_until_the_source_is_up() -> None:
    port = free_port()
    app = create_app(SyntheticSource(CONFIG))
    started: dict[str, Any] = {}

    def start_late() -> None:
        time.sleep(0.6)
        started["server"] = serve(app, port)
        started["server"].__enter__()

    thread = threading.Thread(target=start_late)
    thread.start()
    try:
        with _client(f"http://127.0.0.1:{port}", attempts=8, backoff_s=0.1) as client:
            batch = client.fetch(1, "Monday")
    finally:
        thread.join()
        started["server"].__exit__(None, None, None)
    assert isinstance(batch, Batch)
    assert batch.batch_number == 1


def test_gives_up_with_a_clear_error_when_nobody_listens() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with _client(url, attempts=3) as client, pytest.raises(DataSourceError) as error:
        client.fetch(1, "Monday")
    assert "after 3 attempts" in str(error.value)
    assert "MLOPS_DATASOURCE_URL" in str(error.value)


class FlakyUpstream:
    """FAKE, for a fault the simulator cannot produce: 503 ``failures`` times, then the real app."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.real = TestClient(create_app(SyntheticSource(CONFIG)))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls <= self.failures:
            return httpx.Response(503, text="upstream busy")
        real = self.real.get(request.url.path, params=dict(request.url.params))
        return httpx.Response(real.status_code, content=real.content, headers=real.headers)


def test_5xx_is_retried_with_backoff() -> None:
    upstream = FlakyUpstream(failures=2)
    with _client("http://source", transport=httpx.MockTransport(upstream)) as client:
        batch = client.fetch(1, "Monday")
    assert isinstance(batch, Batch)
    assert batch.batch_number == 1
    assert upstream.calls == 3


def test_persistent_5xx_becomes_an_error() -> None:
    upstream = FlakyUpstream(failures=100)
    with (
        _client("http://source", transport=httpx.MockTransport(upstream), attempts=3) as client,
        pytest.raises(DataSourceError, match="503"),
    ):
        client.fetch(1, "Monday")
    assert upstream.calls == 3


def _bad_source(body: str, status: int = 200) -> FastAPI:
    app = FastAPI()

    @app.get("/data")
    def data() -> Response:
        return Response(body, status_code=status, media_type="application/json")

    return app


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ("<html>oops</html>", "non-JSON"),
        ("[1, 2]", "not an object"),
        ('{"group_number": 1, "day": "Monday", "data": []}', "batch_number"),
        ('{"group_number": 1, "day": "Monday", "batch_number": 1, "data": {}}', "data"),
        ('{"group_number": 1, "day": "Monday", "batch_number": 1, "data": [1]}', "data[0]"),
        ('{"group_number": 9, "day": "Monday", "batch_number": 1, "data": []}', "group 9"),
    ],
)
def test_malformed_answers_say_what_is_wrong(body: str, complaint: str) -> None:
    with (
        serve(_bad_source(body)) as url,
        _client(url) as client,
        pytest.raises(DataSourceError) as error,
    ):
        client.fetch(1, "Monday")
    assert complaint in str(error.value)


def test_other_client_errors_are_not_mistaken_for_the_end() -> None:
    with (
        serve(_bad_source('{"detail": "group unknown"}', 404)) as url,
        _client(url) as client,
        pytest.raises(DataSourceError, match="HTTP 404 group unknown"),
    ):
        client.fetch(1, "Monday")


def test_timeouts_are_retried_then_reported() -> None:
    app = FastAPI()

    @app.get("/data")
    def slow() -> dict[str, str]:
        time.sleep(0.5)
        return {}

    with (
        serve(app) as url,
        _client(url, timeout_s=0.1, attempts=2) as client,
        pytest.raises(DataSourceError, match="ReadTimeout"),
    ):
        client.fetch(1, "Monday")
