"""The data-source API keeps DESIGN.md's contract: batches 1..N, then 400, restart, NaN tokens."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mlops_platform.datasource.app import app_from_settings, create_app
from mlops_platform.datasource.simulator import (
    CsvSource,
    SimulatorConfig,
    SyntheticSource,
    generate_batch,
)
from mlops_platform.schema import FIELDS
from mlops_platform.settings import load_settings
from tests.support import serve

CONFIG = SimulatorConfig(batches=3, batch_size=300, seed=5)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(SyntheticSource(CONFIG))) as test_client:
        yield test_client


def _data(client: TestClient | httpx.Client, group: int = 1, day: str = "Wednesday"):
    return client.get("/data", params={"group_number": group, "day": day})


def test_serves_batches_one_to_n_then_400(client: TestClient) -> None:
    for expected in (1, 2, 3):
        response = _data(client)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert set(body) == {"group_number", "day", "batch_number", "data"}
        assert (body["group_number"], body["day"], body["batch_number"]) == (
            1,
            "Wednesday",
            expected,
        )
        assert len(body["data"]) == CONFIG.batch_size
    end = _data(client)
    assert end.status_code == 400
    detail = end.json()["detail"]
    assert "All 3 batches for group 1 on Wednesday were collected" in detail
    assert "/restart_data_generation?group_number=1&day=Wednesday" in detail


def test_groups_and_days_have_their_own_counters(client: TestClient) -> None:
    assert _data(client, 1, "Monday").json()["batch_number"] == 1
    assert _data(client, 1, "Monday").json()["batch_number"] == 2
    assert _data(client, 2, "Monday").json()["batch_number"] == 1
    assert _data(client, 1, "Tuesday").json()["batch_number"] == 1


def test_restart_serves_the_same_batches_again(client: TestClient) -> None:
    first = _data(client, 4, "Friday").text
    _data(client, 4, "Friday")
    restarted = client.get("/restart_data_generation", params={"group_number": 4, "day": "Friday"})
    assert restarted.status_code == 200
    assert restarted.json()["group_number"] == 4
    again = _data(client, 4, "Friday")
    assert again.json()["batch_number"] == 1
    assert again.text == first


def test_nan_tokens_survive_the_round_trip(client: TestClient) -> None:
    response = _data(client, 6, "Sunday")
    assert "NaN" in response.text
    served = json.loads(response.text)["data"]
    expected = generate_batch(CONFIG, 6, "Sunday", 1)
    assert json.dumps(served, allow_nan=True) == json.dumps(expected, allow_nan=True)
    nan_at = [(i, k) for i, r in enumerate(served) for k, v in r.items() if _is_nan(v)]
    assert nan_at == [(i, k) for i, r in enumerate(expected) for k, v in r.items() if _is_nan(v)]
    assert nan_at


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"group_number": 1, "day": "Someday"}, "day"),
        ({"group_number": 1, "day": "wednesday"}, "day"),
        ({"group_number": 0, "day": "Monday"}, "group_number"),
        ({"group_number": "one", "day": "Monday"}, "group_number"),
        ({"day": "Monday"}, "group_number"),
    ],
)
@pytest.mark.parametrize("path", ["/data", "/restart_data_generation"])
def test_bad_parameters_get_422_naming_the_field(
    client: TestClient, path: str, params: dict, field: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 422
    assert [e["loc"][-1] for e in response.json()["detail"]] == [field]


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_app_from_settings_serves_a_csv(tmp_path: Path) -> None:
    path = tmp_path / "listings.csv"
    rows = [f"{i}.0,for_sale,{1000 + i}.0,,,,,Boston,MA,2108.0,," for i in range(5)]
    path.write_text("\n".join([",".join(FIELDS), *rows]) + "\n", encoding="utf-8")
    app = app_from_settings(load_settings(sim_csv=path, sim_batches=2, sim_seed=1))
    with TestClient(app) as client:
        sizes = [len(_data(client).json()["data"]) for _ in range(2)]
        assert sizes == [3, 2]
        assert _data(client).status_code == 400
    batch = CsvSource(path, batches=2, seed=1).batch(1, "Wednesday", 1)
    assert batch[0]["zip_code"] == "2108.0"
    assert batch[0]["bed"] is None


@pytest.fixture
def server_url() -> Iterator[str]:
    """A real uvicorn server in a thread, so concurrent requests hit real worker threads."""
    app: FastAPI = create_app(SyntheticSource(SimulatorConfig(batches=8, batch_size=50)))
    with serve(app) as url:
        yield url


def test_concurrent_requests_get_each_batch_exactly_once(server_url: str) -> None:
    def fetch(_: int) -> tuple[int, int | None]:
        with httpx.Client(base_url=server_url, timeout=10) as http:
            response = _data(http, 9, "Thursday")
            number = response.json().get("batch_number") if response.status_code == 200 else None
            return response.status_code, number

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(fetch, range(12)))
    served = sorted(n for status, n in results if status == 200)
    assert served == list(range(1, 9))
    assert sorted(status for status, _ in results) == [200] * 8 + [400] * 4
