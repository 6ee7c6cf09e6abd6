"""docker/airflow.Dockerfile: it cannot be built here (no Docker engine), so it is linted with
hadolint (test_dockerfile.py) and checked here for what the airflow chart relies on: the pinned
official base image, the package installed without touching Airflow, the DAGs baked in, the
airflow user."""

from __future__ import annotations

import re

import yaml

from tests.charts.conftest import CHARTS_DIR, REPO
from tests.charts.test_dockerfile import instructions

DOCKERFILE = REPO / "docker" / "airflow.Dockerfile"


def test_base_is_the_pinned_official_image_of_the_chart_version() -> None:
    froms = [args for word, args in instructions(DOCKERFILE) if word == "FROM"]
    assert froms == ["apache/airflow:3.3.2-python3.11"], "one stage, pinned official image"
    chart = yaml.safe_load((CHARTS_DIR / "airflow" / "Chart.yaml").read_text())
    values = yaml.safe_load((CHARTS_DIR / "airflow" / "values.yaml").read_text())
    assert chart["appVersion"] == "3.3.2"
    assert (values["image"]["repository"], values["image"]["tag"]) == ("mlops/airflow", "3.3.2")
    args = dict(a.split("=", 1) for w, a in instructions(DOCKERFILE) if w == "ARG" and "=" in a)
    assert args["AIRFLOW_VERSION"] == "3.3.2"


def test_installs_the_package_without_changing_airflow() -> None:
    steps = instructions(DOCKERFILE)
    copies = [args for word, args in steps if word == "COPY"]
    assert any("pyproject.toml README.md /src/" in c for c in copies)
    assert any(re.search(r"\bsrc/ /src/src/$", c) for c in copies)
    runs = [args for word, args in steps if word == "RUN"]
    (install,) = [r for r in runs if "pip install" in r]
    assert "--no-cache-dir" in install
    assert re.search(
        r"pip install --no-cache-dir \"apache-airflow==\$\{AIRFLOW_VERSION\}\" /src\b", install
    )
    assert "[airflow]" not in install, "Airflow is already in the image"
    assert "mlops --help" in install, "the CLI the migration Job runs must start"
    # The package is copied before it is installed.
    order = [w for w, _ in steps]
    assert order.index("COPY") < order.index("RUN")


def test_dags_are_baked_into_the_image_dags_folder() -> None:
    copies = [args for word, args in instructions(DOCKERFILE) if word == "COPY"]
    assert any(re.search(r"\bdags/ /opt/airflow/dags/?$", c) for c in copies)
    assert list((REPO / "dags").glob("*.py")), "dags/ has the DAGs the image carries"


def test_runs_as_the_airflow_user() -> None:
    users = [args for word, args in instructions(DOCKERFILE) if word == "USER"]
    assert users, "set USER"
    assert users[-1].split(":")[0] in {"airflow", "50000"}, "the official image's airflow uid"
    values = yaml.safe_load((CHARTS_DIR / "airflow" / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 50000


def test_exposes_the_chart_ports() -> None:
    exposed = [args for word, args in instructions(DOCKERFILE) if word == "EXPOSE"]
    assert exposed == ["8080 8793 8794"]
