"""The API's own limits, on a real uvicorn server: bodies over MLOPS_MAX_BODY_BYTES are refused
with 413 before they are read whole, and with no token set the model hook is off."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from mlops_platform.serving.app import create_app
from mlops_platform.settings import SettingsError, load_settings
from tests import support
from tests.conftest import Stores
from tests.plugins.mlflow_stack import MlflowServer

LIMIT = 64 * 1024


@pytest.fixture
def api(mlflow_server: MlflowServer, stores: Stores) -> Iterator[str]:
    settings = stores.settings(
        mlflow_tracking_uri=mlflow_server.tracking_uri,
        model_name=f"api_limits_{uuid.uuid4().hex[:8]}",  # none registered: no model, fine here
        max_body_bytes=LIMIT,
        api_token="",
    )
    with support.serve(create_app(settings)) as url:
        yield url


def _sent(chunks: list[bytes], counter: list[int]) -> Iterator[bytes]:
    for chunk in chunks:
        counter[0] += len(chunk)
        yield chunk


def test_a_declared_body_over_the_limit_is_refused_unread(api: str) -> None:
    body = b"[" + b"0," * (LIMIT // 2) + b"0]"
    answer = httpx.post(f"{api}/predict", content=body, timeout=10)
    assert answer.status_code == 413
    assert "MLOPS_MAX_BODY_BYTES" in answer.json()["detail"]


def test_a_streamed_body_is_cut_off_once_past_the_limit(api: str) -> None:
    """No Content-Length (chunked): refused when the count passes the limit, not after a 50 MB
    upload. The client sees the 413, or the closed connection if it was still sending."""
    chunk = b" " * 16 * 1024
    sent = [0]
    try:
        answer = httpx.post(
            f"{api}/predict",
            content=_sent([b"[", *[chunk] * 3200, b"]"], sent),
            headers={"content-type": "application/json"},
            timeout=30,
        )
    except (httpx.WriteError, httpx.ReadError, httpx.RemoteProtocolError):
        refused = True
    else:
        refused = answer.status_code == 413
    assert refused, "the body was read whole and answered otherwise"
    assert sent[0] < 3200 * len(chunk), "the server took the whole upload"


def test_a_small_body_goes_through(api: str) -> None:
    answer = httpx.post(f"{api}/predict", json=support.RAW_LISTING, timeout=10)
    assert answer.status_code != 413  # 503 or 422 here: no model; the limit let it in


def test_without_a_token_the_hook_is_off(api: str) -> None:
    for headers in ({}, {"Authorization": "Bearer anything-at-all"}):
        answer = httpx.post(f"{api}/hooks/model_update", headers=headers, timeout=10)
        assert answer.status_code == 401
        assert "MLOPS_API_TOKEN" in answer.json()["detail"]


def test_a_short_token_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="MLOPS_API_TOKEN"):
        load_settings(api_token="short")
