"""Every workload of ours in the umbrella chart's default render, started from our image with its
rendered pod spec under podman, as the kubelet would (tests/images/kubelet.py): each Job exits 0,
each long-running container passes its own startup, liveness and readiness probes. Then the
platform works through those containers: migrations really migrated, Airflow lists the DAGs,
which the chart starts unpaused and which run by themselves to a model in production, the API
predicts and the UI renders its page.

What this proves: our image, our pod specs (commands, env, Secrets, security contexts, volumes,
limits) and our probes. What it does not: the kubelet itself, Kubernetes DNS and networking,
upstream images (PostgreSQL, Redis, SeaweedFS, git-sync, Prometheus, Grafana), storage classes.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import psycopg
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.charts.conftest import render_chart
from tests.images import kubelet
from tests.images.conftest import REPO, START_TIMEOUT_S, Node
from tests.ui.test_browser import (
    CHROMIUM_ARGS,
    VIEWPORT,
    assert_no_exception,
    chromium_executable,
    wait_rendered,
)

pytestmark = pytest.mark.images

# The order a helm install reaches them in: MLflow and the simulator, Airflow's hook Jobs (its
# Deployments wait for the migrations in an init container), Airflow, the UI and the API.
_FIRST = ["mlflow", "datasource", "airflow-migrate", "airflow-create-user"]
_LAST = ["streamlit", "fastapi"]


def _ordered_workloads() -> list[str]:
    names = [
        w["metadata"]["name"]
        for w in kubelet.owned_workloads(kubelet.Render(render_chart("mlops")))
    ]
    rank = {name: i for i, name in enumerate(_FIRST)}
    rank.update({name: 100 + i for i, name in enumerate(_LAST)})
    return sorted(names, key=lambda n: (rank.get(n, 50), n))


WORKLOADS = _ordered_workloads()
# `helm test`'s pods (templates/tests/ of each chart) whose server runs on this node: ours, and
# PostgreSQL, S3 and Redis, which the node runs itself. Prometheus and Grafana need their upstream
# images and a cluster (Prometheus finds the API through the Kubernetes API): their test pods run
# in the kind workflow (.github/workflows/e2e.yml); tests/charts checks what they call.
CLUSTER_ONLY_TESTS = {"prometheus-test", "grafana-test"}
TEST_PODS = sorted(
    name
    for name in (p["metadata"]["name"] for p in kubelet.Render(render_chart("mlops")).test_pods())
    if name not in CLUSTER_ONLY_TESTS
)
SCREENSHOTS = REPO / "test-output" / "images"
DAG_IDS = sorted(p.stem for p in (REPO / "dags").glob("*.py") if not p.name.startswith("_"))


def _airflow_token(node: Node) -> str:
    secret = node.render.secret("airflow-credentials")
    answer = httpx.post(
        "http://127.0.0.1:8080/auth/token",
        json={"username": secret["admin-username"], "password": secret["admin-password"]},
        timeout=30,
    )
    answer.raise_for_status()
    return answer.json()["access_token"]


def _airflow(node: Node, method: str, path: str, **kw: Any) -> Any:
    answer = httpx.request(
        method,
        f"http://127.0.0.1:8080/api/v2/{path}",
        headers={"Authorization": f"Bearer {_airflow_token(node)}"},
        timeout=30,
        **kw,
    )
    answer.raise_for_status()
    return answer.json()


def _serving_a_model(node: Node) -> None:
    """The cluster's own path to a first model, with no one touching anything: Airflow's pods
    run, the chart starts the DAGs unpaused, the data DAG's first scheduled run collects a batch
    on the Celery worker, its asset starts the modeling DAG, whose promotion starts the
    production DAG, which calls the API's hook; until then the API is Ready and says why it
    cannot predict."""
    node.run("fastapi")
    for name in (
        "airflow-migrate",
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-worker",
    ):
        node.run(name)

    def unpaused() -> bool:
        dags = {d["dag_id"]: d["is_paused"] for d in _airflow(node, "GET", "dags")["dags"]}
        return dags == dict.fromkeys(DAG_IDS, False)

    _wait_for(unpaused, 120)

    def model_served() -> bool:
        return httpx.get("http://127.0.0.1:8989/model", timeout=10).status_code == 200

    _wait_for(model_served, START_TIMEOUT_S)


def _wait_for(check: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout_s:.0f}s: {check.__doc__ or check}")
        time.sleep(2)


@pytest.mark.parametrize("name", WORKLOADS)
def test_workload_starts_from_its_pod_spec(node: Node, name: str) -> None:
    node.run(name)
    pod = node.pod(name)
    if pod.workload["kind"] != "Job":
        for container in pod.spec["containers"]:
            if kubelet.is_owned(container):
                assert kubelet.running(pod.container_name(container)), container["name"]


def test_migration_job_migrated_airflow_and_the_stores(node: Node) -> None:
    node.run("airflow-migrate")
    secret = node.render.secret("postgres-credentials")
    password = secret["postgres-password"]
    for database, table in [
        ("airflow", "alembic_version"),
        ("rawdata", "raw_data.batches"),
        ("cleandata", "clean_data.model_history"),
    ]:
        with psycopg.connect(
            f"host=127.0.0.1 port=5432 user=postgres password={password} dbname={database}"
        ) as conn:
            assert conn.execute(f"SELECT to_regclass('{table}')").fetchone() == (table,), database


def test_create_user_job_is_idempotent(node: Node) -> None:
    node.run("airflow-migrate")  # its hook runs first (weights), as in a helm install
    node.run("airflow-create-user")
    node.run_job("airflow-create-user")
    node.run("airflow-api-server")
    assert _airflow_token(node), "the admin user logs in"


def test_api_server_lists_the_three_dags(node: Node) -> None:
    for name in ("airflow-migrate", "airflow-api-server", "airflow-dag-processor"):
        node.run(name)
    _wait_for(
        lambda: {d["dag_id"] for d in _airflow(node, "GET", "dags")["dags"]} == set(DAG_IDS), 180
    )
    assert len(DAG_IDS) == 3


def test_prediction_through_the_api_container(node: Node) -> None:
    _serving_a_model(node)
    listing = {
        "brokered_by": "52707",
        "status": "for_sale",
        "bed": 3,
        "bath": 2,
        "acre_lot": 0.25,
        "street": "1758218",
        "city": "East Windsor",
        "state": "Connecticut",
        "zip_code": "06016",
        "house_size": 1617,
        "prev_sold_date": "1999-09-30",
    }
    answer = httpx.post("http://127.0.0.1:8989/predict", json=listing, timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["predictions"][0] > 0
    assert httpx.get("http://127.0.0.1:8989/model", timeout=10).json()["version"]


def test_ui_container_renders_the_predict_page(node: Node) -> None:
    """In headless Chromium: the Predict page of the UI container, the example listing priced
    through the API container (so the API comes first)."""
    _serving_a_model(node)
    node.run("streamlit")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_executable(), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto("http://127.0.0.1:8501/")
            wait_rendered(page, "Predict a house price", charts=0)
            price = page.locator('[data-testid="stMetric"]').filter(has_text="Predicted price")
            expect(price.locator('[data-testid="stMetricValue"]')).to_contain_text("$")
            assert_no_exception(page)
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=SCREENSHOTS / "ui-predict.png", full_page=True)
        finally:
            browser.close()


def test_every_server_chart_has_a_helm_test_pod_here_or_in_the_cluster() -> None:
    assert len(TEST_PODS) + len(CLUSTER_ONLY_TESTS) == 10, TEST_PODS


@pytest.mark.parametrize("name", TEST_PODS)
def test_helm_test_pod_passes_against_the_running_platform(node: Node, name: str) -> None:
    """What `helm test` does after an install: each chart's test pod, from its rendered spec,
    calls its Service by name as a client does and exits 0 (the API's predicts once, since a
    model is in production by then)."""
    _serving_a_model(node)
    for workload in WORKLOADS:
        node.run(workload)
    node.run(name)
    pod = node.pod(name)
    (container,) = pod.spec["containers"]
    log = kubelet.logs(pod.container_name(container))
    assert log.splitlines()[-1].startswith("ok "), log
    if name == "fastapi-test":
        assert "predicts" in log, log


def test_every_liveness_probe_passes_with_the_whole_platform_running(node: Node) -> None:
    """Last, with every pod up: a liveness probe slower than its timeoutSeconds on a busy node
    would have the kubelet restart a healthy container."""
    assert node.pods, "the workloads ran first"
    failures = []
    for pod in node.pods.values():
        for container in pod.spec["containers"]:
            probe = container.get("livenessProbe")
            if kubelet.is_owned(container) and probe and pod.containers:
                ok, why = kubelet.probe_once(pod.container_name(container), container, probe)
                if not ok:
                    failures.append(f"{pod.name}/{container['name']}: {why}")
    assert not failures, failures
