"""The local Prometheus' configuration (`mlops up`): the chart's jobs on local ports, the chart's
rule files, accepted by promtool; and a machine without the binary is told once how to get it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from mlops_platform.local import platform
from mlops_platform.local import prometheus as local_prometheus
from mlops_platform.settings import Settings, load_settings
from tests.support import installed


def local_settings(tmp_path: Path, **overrides: object) -> Settings:
    return platform.on_free_ports(load_settings(state_dir=tmp_path / "state", **overrides))


def test_the_config_scrapes_the_api_the_exporter_and_itself(tmp_path: Path) -> None:
    settings = local_settings(tmp_path, prometheus_scrape_interval_s=2)
    config = yaml.safe_load(local_prometheus.write_config(settings).read_text())
    targets = {
        job["job_name"]: (job["metrics_path"], job["static_configs"][0]["targets"])
        for job in config["scrape_configs"]
    }
    assert targets == {
        "prometheus": ("/metrics", [f"127.0.0.1:{settings.prometheus_port}"]),
        "fastapi": ("/metrics", [f"127.0.0.1:{settings.api_port}"]),
        "mlops-loop": ("/metrics", [f"127.0.0.1:{settings.exporter_port}"]),
    }
    assert config["global"]["scrape_interval"] == config["global"]["evaluation_interval"] == "2s"
    rules = Path(config["rule_files"][0])
    assert rules.parent == local_prometheus.folder(settings) / "rules"
    assert sorted(p.name for p in rules.parent.glob(rules.name)) == [
        "mlops-api.yml",
        "mlops-loop.yml",
    ]


def test_promtool_accepts_the_config_and_its_rules(tmp_path: Path) -> None:
    promtool = installed("promtool", "apt-get install prometheus (scripts/ensure-tools.sh)")
    settings = local_settings(tmp_path, prometheus_data_interval_s=5)
    path = local_prometheus.write_config(settings)
    checked = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 2 rule files found" in checked.stdout, checked.stdout
    loop = (local_prometheus.folder(settings) / "rules" / "mlops-loop.yml").read_text()
    assert '{job="mlops-loop"}) > 10' in loop  # two intervals of 5 s


def test_status_lists_the_exporter_and_prometheus_with_urls(tmp_path: Path) -> None:
    settings = local_settings(tmp_path)
    found = {e.name: e for e in platform.status(settings)}
    assert found["exporter"].url == f"http://127.0.0.1:{settings.exporter_port}/metrics"
    assert found["exporter"].port_variable == "EXPORTER_PORT"
    assert found["prometheus"].port_variable == "PROMETHEUS_PORT"
    assert found["prometheus"].pid is None


def test_without_the_binary_up_says_so_once_and_carries_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_prometheus, "binary", lambda: None)
    settings = local_settings(tmp_path)
    said: list[tuple[str, str, str]] = []
    listed = platform.up(settings, lambda *line: said.append(line), services=("prometheus",))
    assert said == [("prometheus", "skipped", local_prometheus.MISSING)]
    assert "apt-get install prometheus" in local_prometheus.MISSING
    assert [(e.name, e.pid) for e in listed] == [("prometheus", None)]
    assert "apt-get install prometheus" in listed[0].url
