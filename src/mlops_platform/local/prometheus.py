"""Prometheus on one machine (`mlops up`): Debian's `prometheus` binary scraping the local API, the
loop exporter and itself, with the alert rules of the prometheus chart.

Where the rules come from, and why they cannot drift from the chart: the chart's rule files are
Helm templates (configmap.yaml), so Python cannot read them as they are, and helm is not a
runtime dependency of `mlops up` (a user with Debian's prometheus need not have helm). So the
files in ``prometheus_rules/`` are the chart's rule files *as `helm template` renders them* with
the chart's default values, committed, and ``tests/charts/test_local_rules.py`` renders the chart
and fails when they differ (``python -m tests.charts.test_local_rules`` writes them again). The
one local knob, the data interval of MlopsLoopNoNewData, replaces the rendered threshold; the same
test proves that the replacement equals helm's own rendering with another interval.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Any

import yaml

from mlops_platform.settings import Settings

RULES_DIR = Path(__file__).parent / "prometheus_rules"
RULE_FILES = ("mlops-api.yml", "mlops-loop.yml")
# The chart's rule files the local Prometheus leaves out: locally nothing exports Airflow's StatsD
# metrics (Debian packages no statsd_exporter), so its rules could only say the target is missing.
NOT_LOCAL = ("airflow.yml",)
# The chart's defaults the committed rules were rendered with (charts/prometheus/values.yaml);
# the chart test checks both.
CHART_DATA_INTERVAL_S = 3600
FASTAPI_JOB = "fastapi"
LOOP_JOB = "mlops-loop"
# Debian installs /usr/bin/prometheus; a PATH without /usr/bin (a service manager's) still finds it.
FALLBACK_BINARIES = (Path("/usr/bin/prometheus"),)
MISSING = "prometheus not found: apt-get install prometheus, then mlops up"


def binary() -> str | None:
    """The prometheus executable: PATH first, then Debian's location; None when not installed."""
    found = shutil.which("prometheus")
    if found:
        return found
    for path in FALLBACK_BINARIES:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def folder(settings: Settings) -> Path:
    return settings.state_dir.resolve() / "prometheus"


def url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.prometheus_port}"


def ready_url(settings: Settings) -> str:
    return f"{url(settings)}/-/ready"


def rule_files(settings: Settings) -> dict[str, str]:
    """The chart's rule files (rendered copies), with the local data interval."""
    files = {name: (RULES_DIR / name).read_text() for name in RULE_FILES}
    files["mlops-loop.yml"] = with_data_interval(
        files["mlops-loop.yml"], settings.prometheus_data_interval_s
    )
    return files


def with_data_interval(loop_rules: str, interval_s: int) -> str:
    """MlopsLoopNoNewData's threshold (two intervals) for ``interval_s`` instead of the chart's.

    The rendered file holds that number in the rule's expression and summary only; the chart test
    compares the result with `helm template --set alerts.dataIntervalSeconds=N`."""
    return loop_rules.replace(str(2 * CHART_DATA_INTERVAL_S), str(2 * interval_s))


def config(settings: Settings, rules_dir: Path) -> dict[str, Any]:
    """prometheus.yml: the chart's jobs and labels, with local static targets."""
    every = f"{settings.prometheus_scrape_interval_s}s"

    def job(name: str, port: int) -> dict[str, Any]:
        return {
            "job_name": name,
            "metrics_path": "/metrics",
            "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
        }

    return {
        "global": {
            "scrape_interval": every,
            "evaluation_interval": every,
            "external_labels": {"platform": "mlops"},
        },
        "rule_files": [str(rules_dir / "*.yml")],
        "scrape_configs": [
            job("prometheus", settings.prometheus_port),
            job(FASTAPI_JOB, settings.api_port),
            job(LOOP_JOB, settings.exporter_port),
        ],
    }


def write_config(settings: Settings) -> Path:
    """Write the rule files and prometheus.yml under the state folder; returns the config path.

    Written on every start, so a changed port or interval takes effect with the next `mlops up`."""
    rules = folder(settings) / "rules"
    rules.mkdir(parents=True, exist_ok=True)
    for name, text in rule_files(settings).items():
        (rules / name).write_text(text)
    path = folder(settings) / "prometheus.yml"
    path.write_text(yaml.safe_dump(config(settings, rules), sort_keys=False))
    return path


def command(settings: Settings, executable: str) -> list[str]:
    """Listening on loopback only, like every other local service; data in the state folder."""
    return [
        executable,
        f"--config.file={folder(settings) / 'prometheus.yml'}",
        f"--storage.tsdb.path={folder(settings) / 'data'}",
        "--storage.tsdb.retention.time=15d",
        f"--web.listen-address=127.0.0.1:{settings.prometheus_port}",
    ]


def reload(pid: int) -> None:
    """A running Prometheus re-reads its config and rules on SIGHUP (a reused one gets the new)."""
    os.kill(pid, signal.SIGHUP)
