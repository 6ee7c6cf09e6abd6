"""The UI's only way to predictions and explanations: the inference API over HTTP.

Failures become :class:`ApiProblem` with a sentence a person can act on, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


class ApiProblem(Exception):
    """The API could not answer; ``str()`` says why and what to do."""


@dataclass(frozen=True)
class Prediction:
    price: float
    model: dict[str, str]


def _call(method: str, url: str, timeout_s: float, body: Any = None) -> Any:
    base = url.rsplit("/", 1)[0]
    try:
        response = httpx.request(method, url, json=body, timeout=timeout_s)
    except httpx.HTTPError as error:
        raise ApiProblem(
            f"The inference API at {base} is not reachable ({type(error).__name__}). "
            "Start it (`mlops serve api`, or `mlops up`) or check MLOPS_API_URL."
        ) from None
    if response.status_code == 429:
        raise ApiProblem(
            f"The inference API is busy ({_detail(response)}). Wait "
            f"{response.headers.get('retry-after', 'a few')} s and try again."
        )
    if response.status_code == 503:
        raise ApiProblem(
            f"The inference API has no production model to serve yet ({_detail(response)}). "
            "Run the modeling pipeline (Airflow's modeling_pipeline, or `mlops pipeline run "
            "model`) and try again."
        )
    if response.status_code == 422:
        raise ApiProblem(f"The API refused the listing: {_detail(response)}")
    if response.status_code >= 400:
        raise ApiProblem(f"The API answered {response.status_code}: {_detail(response)}")
    return response.json()


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return response.text[:200]
    if isinstance(detail, list):  # FastAPI's validation errors
        return "; ".join(
            f"{'.'.join(map(str, d.get('loc', [])[1:]))}: {d.get('msg')}" for d in detail
        )
    return str(detail)


def model_info(api_url: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """``GET /model``: the served version, its metrics and training data."""
    return _call("GET", f"{api_url}/model", timeout_s)


def predict(api_url: str, record: dict[str, Any], timeout_s: float = 10.0) -> Prediction:
    """``POST /predict`` for one listing."""
    body = _call("POST", f"{api_url}/predict", timeout_s, record)
    return Prediction(float(body["predictions"][0]), body["model"])


def explain(api_url: str, record: dict[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
    """``POST /explain``: base value and SHAP contribution per field, in log(price)."""
    return _call("POST", f"{api_url}/explain", timeout_s, record)
