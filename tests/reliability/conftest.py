"""`make reliability`: load, faults, fuzzing and security checks against one real local platform.

One `mlops up` per session (a fresh state folder on free ports), shared by every scenario. A
scenario that breaks a service puts it back (``Platform.restart``) before it ends, so the next
one starts from a healthy platform. Each scenario records its figures with ``scenario.report``;
the session prints one line per scenario and a closing ``N passed, N failed``, and writes every
figure to ``build/reliability.json`` (docs/RELIABILITY.md quotes them).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from mlops_platform.local import platform as local
from mlops_platform.local.keys import keys
from mlops_platform.local.platform import on_free_ports
from mlops_platform.local.processes import wait_until
from mlops_platform.settings import Settings, load_settings
from mlops_platform.storage.engine import make_engine
from tests.e2e.conftest import mlops

REPORT = Path("build/reliability.json")
KEPT_LOGS = Path("build/reliability-logs")
# Enough batches that the data DAG has work during the load test and the faults, small enough that
# a batch is ingested and cleaned in about a second here.
SIMULATOR = {"sim_batches": 40, "sim_batch_size": 1000, "sim_drift_at": 20, "sim_seed": 11}


@dataclass
class Platform:
    """The running local platform and what scenarios do to it."""

    settings: Settings

    @property
    def secrets(self) -> dict[str, str]:
        return keys(self.settings)

    def mlops(self, *args: str, timeout_s: float = 600) -> str:
        """`mlops ARGS` as a user runs it; its output, or the test fails with it."""
        result = mlops(list(args), self.settings, timeout_s=timeout_s)
        assert result.returncode == 0, f"mlops {' '.join(args)}:\n{result.stdout}{result.stderr}"
        return result.stdout

    def pid(self, name: str) -> int | None:
        return local.pid_of(self.settings, name)

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> int:
        """Kill service ``name`` (PostgreSQL: its postmaster; others: their process group)."""
        pid = self.pid(name)
        assert pid is not None, f"{name} is not running"
        if name == "postgres":
            os.kill(pid, sig)
        else:
            os.killpg(pid, sig)
        wait_until(f"{name} to stop", lambda: self.pid(name) is None, 30)
        return pid

    def restart(self) -> float:
        """`mlops up --no-pipeline`: restarts whatever is down; the seconds it took."""
        started = time.monotonic()
        self.mlops("up", "--no-pipeline")
        self.wait_ready()
        return time.monotonic() - started

    def wait_ready(self, timeout_s: float = 120) -> None:
        def ready() -> bool:
            try:
                return httpx.get(f"{self.settings.api_url}/readyz", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until("the API to be ready", ready, timeout_s)

    def raw(self) -> Engine:
        return make_engine(self.settings.raw_url)

    def clean(self) -> Engine:
        return make_engine(self.settings.clean_url)

    def api(self, timeout_s: float = 30) -> httpx.Client:
        return httpx.Client(base_url=self.settings.api_url, timeout=timeout_s)


@dataclass
class Scenario:
    """What one scenario measured: a one-line summary and its figures."""

    name: str
    summary: str = ""
    figures: dict[str, Any] = field(default_factory=dict)

    def report(self, summary: str, **figures: Any) -> None:
        self.summary = summary
        self.figures.update(figures)


_scenarios: dict[str, Scenario] = {}


# While writing scenarios: `python -m tests.reliability.conftest FILE` starts a platform and saves
# its settings to FILE; MLOPS_RELIABILITY_PLATFORM=FILE makes the suite use (and heal) that one
# instead of starting and purging its own.
REUSE = "MLOPS_RELIABILITY_PLATFORM"


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    if os.environ.get(REUSE):
        running = Platform(Settings.model_validate_json(Path(os.environ[REUSE]).read_text()))
        running.restart()
        yield running
        return
    shutil.rmtree(KEPT_LOGS, ignore_errors=True)
    state = tmp_path_factory.mktemp("reliability") / "state"
    settings = on_free_ports(load_settings(state_dir=state, **SIMULATOR))
    running = Platform(settings)
    try:
        running.mlops("up", timeout_s=900)
        running.wait_ready()
        yield running
    finally:
        if any(outcome != "passed" for outcome in _outcomes.values()):
            keep_logs(state / "logs")
        mlops(["down", "--purge"], settings)


def keep_logs(logs: Path) -> None:
    """A failed run's service logs, kept in build/: the state folder is purged."""
    shutil.rmtree(KEPT_LOGS, ignore_errors=True)
    shutil.copytree(logs, KEPT_LOGS)


@pytest.fixture
def scenario(request: pytest.FixtureRequest) -> Scenario:
    found = Scenario(request.node.name.removeprefix("test_").replace("_", " "))
    _scenarios[request.node.nodeid] = found
    return found


_outcomes: dict[str, str] = {}
_docs: dict[str, str] = {}


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A scenario without a report of its own is summarised by its docstring's first line."""
    doc = getattr(getattr(item, "function", None), "__doc__", None) or ""
    _docs[item.nodeid] = doc.strip().split("\n", 1)[0]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _outcomes[report.nodeid] = report.outcome


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _outcomes:
        return
    write = terminalreporter.write_line
    write("")
    write("reliability scenarios:")
    rows = []
    for nodeid, outcome in _outcomes.items():
        found = _scenarios.get(nodeid)
        name = found.name if found else nodeid.rsplit("::", 1)[-1]
        summary = found.summary if found and found.summary else _docs.get(nodeid, "")
        write(f"  {outcome.upper():7} {name}: {summary}")
        rows.append(
            {
                "test": nodeid,
                "scenario": name,
                "outcome": outcome,
                "summary": summary,
                **({"figures": found.figures} if found else {}),
            }
        )
    passed = sum(1 for outcome in _outcomes.values() if outcome == "passed")
    if passed < len(_outcomes) and KEPT_LOGS.is_dir():
        # CI keeps only this output: the end of every service's log says what the platform saw.
        for log in sorted(KEPT_LOGS.glob("*.log")):
            write(f"--- the end of {log}:")
            for line in log.read_text(errors="replace").splitlines()[-12:]:
                write(f"    {line[:300]}")
    write(f"{passed} passed, {len(_outcomes) - passed} failed")
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    import sys

    target = Path(sys.argv[1])
    state = target.parent / "state"
    started = Platform(on_free_ports(load_settings(state_dir=state, **SIMULATOR)))
    started.mlops("up", timeout_s=900)
    target.write_text(started.settings.model_dump_json())
    sys.stdout.write(f"platform up; {REUSE}={target}; stop: MLOPS_STATE_DIR={state} mlops down\n")
