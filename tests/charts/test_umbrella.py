"""The umbrella chart charts/mlops: one release with the same objects and Service names as the
guide's staged install, every host a pod is given is a Service it renders, and its NetworkPolicies
admit exactly the flows of DESIGN.md's diagram — no more, and none that a component needs less —
plus each chart's own `helm test` pod."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.conftest import (
    CHARTS_DIR,
    COMPONENTS,
    EXPORTER_FLOWS,
    EXPORTER_INGEST,
    EXPORTER_NAMES,
    FLOWS,
    REPO,
    SERVICES,
    UMBRELLA,
    HelmError,
    by_kind,
    client_rules,
    ensure_dependencies,
    exporter_rules,
    helm,
    helm_test_peer,
    helm_test_pods,
    helm_test_rules,
    is_exporter_object,
    pod_labels,
    pod_spec,
    render_chart,
    require_tool,
    required_values,
    workloads,
)
from tests.charts.test_cross_references import LOCAL, hosts_in_configs, hosts_in_workloads

NAME = "app.kubernetes.io/name"


def umbrella(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return render_chart(UMBRELLA, values, release="mlops")


def identity(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def test_dependencies_are_every_chart_from_this_folder() -> None:
    meta = yaml.safe_load((CHARTS_DIR / UMBRELLA / "Chart.yaml").read_text())
    deps = {d["name"]: d for d in meta["dependencies"]}
    assert sorted(deps) == sorted(COMPONENTS)
    assert len(deps) == 11
    for name, dep in deps.items():
        chart = yaml.safe_load((CHARTS_DIR / name / "Chart.yaml").read_text())
        assert dep["repository"] == f"file://../{name}"
        assert dep["condition"] == f"{name}.enabled"
        assert dep["version"] == chart["version"], f"{name}: bump the umbrella's dependency"
    lock = yaml.safe_load((CHARTS_DIR / UMBRELLA / "Chart.lock").read_text())
    assert {(d["name"], d["version"]) for d in lock["dependencies"]} == {
        (d["name"], d["version"]) for d in meta["dependencies"]
    }, "Chart.lock is stale: run helm dependency update charts/mlops"


def test_dependency_build_works_offline(tmp_path: Path) -> None:
    """`helm dependency build` on a copy of charts/, with every proxy pointing at a closed port."""
    copy = tmp_path / "charts"
    shutil.copytree(CHARTS_DIR, copy, ignore=shutil.ignore_patterns("*.tgz"))
    dead = "http://127.0.0.1:9"
    env = {**os.environ, "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "NO_PROXY": ""}
    env |= {"HELM_CACHE_HOME": str(tmp_path / "cache"), "HELM_CONFIG_HOME": str(tmp_path / "cfg")}
    result = subprocess.run(
        [require_tool("helm"), "dependency", "build", str(copy / UMBRELLA), "--skip-refresh"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    built = sorted(p.name for p in (copy / UMBRELLA / "charts").glob("*.tgz"))
    assert built == sorted(f"{name}-0.1.0.tgz" for name in COMPONENTS)


def test_same_objects_as_the_staged_install() -> None:
    staged = {identity(o) for chart in COMPONENTS for o in render_chart(chart)}
    assert {identity(o) for o in umbrella()} == staged


def test_services_have_the_contract_names_and_ports() -> None:
    rendered = {
        svc["metadata"]["name"]: sorted(p["port"] for p in svc["spec"]["ports"])
        for svc in by_kind(umbrella(), "Service")
        if svc["spec"].get("clusterIP") != "None"  # headless companions (StatefulSet DNS)
    }
    expected = {name: ports for chart in SERVICES.values() for name, ports in chart.items()}
    assert rendered == expected


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_component_can_be_switched_off(component: str) -> None:
    kept = umbrella({component: {"enabled": False}})
    gone = {identity(o) for o in render_chart(component)}
    assert gone.isdisjoint({identity(o) for o in kept})
    assert kept, "the other components are still rendered"


def test_subchart_values_flow_through() -> None:
    objects = umbrella({"fastapi": {"replicaCount": 3}, "airflow": {"executor": "LocalExecutor"}})
    api = next(o for o in by_kind(objects, "Deployment") if o["metadata"]["name"] == "fastapi")
    assert api["spec"]["replicas"] == 3
    assert not [o for o in workloads(objects) if "worker" in o["metadata"]["name"]]
    with pytest.raises(HelmError, match="colour"):
        umbrella({"fastapi": {"colour": "blue"}})


def test_airflow_migrations_run_after_postgres_in_one_release() -> None:
    """PostgreSQL is in this release: a pre-install hook would run before it exists."""
    jobs = [o for o in umbrella() if o["kind"] == "Job" and o["metadata"]["name"] != "minio-bucket"]
    hooks = {o["metadata"]["annotations"].get("helm.sh/hook", "") for o in jobs}
    assert hooks
    assert all("pre-install" not in h for h in hooks), hooks


def test_every_host_in_a_pod_or_config_is_a_rendered_service() -> None:
    objects = umbrella()
    known = {
        (svc["metadata"]["name"], port["port"])
        for svc in by_kind(objects, "Service")
        for port in svc["spec"]["ports"]
    }
    names = {name for name, _ in known}
    problems, checked = [], set()
    for scheme, host, port, where in hosts_in_workloads(objects) + hosts_in_configs(objects):
        if scheme == "s3" or host in LOCAL:
            continue
        if "." in host and host.split(".")[0] not in names:
            continue  # documentation links in comments
        service = host.split(".")[0]
        checked.add(service)
        if service not in names:
            problems.append(f"{where}: {host} is no Service")
        elif port is not None and (service, port) not in known:
            problems.append(f"{where}: {host}:{port} is no Service port")
    assert not problems, "\n".join(problems)
    assert {"postgres", "redis", "minio", "mlflow", "fastapi", "datasource"} <= checked


def policies(objects: list[dict[str, Any]]) -> dict[str, tuple[set[str], set[int]]]:
    """server name -> (client names admitted, ports), from the rendered NetworkPolicies (an
    exporter's policy, conftest.EXPORTER_NAMES: its scrapers' rule)."""
    found = {}
    for policy in by_kind(objects, "NetworkPolicy"):
        spec = policy["spec"]
        server = spec["podSelector"]["matchLabels"][NAME]
        assert spec["policyTypes"] == ["Ingress"]
        clients: set[str] = set()
        ports: set[int] = set()
        rules = exporter_rules(policy) if is_exporter_object(policy) else client_rules(policy)
        for rule in rules:
            for peer in rule.get("from", []):
                assert set(peer) == {"podSelector"}, "in-cluster peers are pods of this namespace"
                clients.add(peer["podSelector"]["matchLabels"][NAME])
            ports |= {p["port"] for p in rule.get("ports", [])}
        assert server not in found, f"two policies select {server}"
        found[server] = (clients, ports)
    return found


def container_ports(objects: list[dict[str, Any]], name: str) -> set[int]:
    return {
        port["containerPort"]
        for workload in workloads(objects)
        if pod_labels(workload).get(NAME) == name
        for container in pod_spec(workload)["containers"]
        for port in container.get("ports", [])
    }


def test_network_policies_admit_exactly_the_designed_flows() -> None:
    objects = umbrella()
    found = policies(objects)
    # An exporter that receives (conftest.EXPORTER_INGEST) admits its own chart's pods too.
    exporters = {
        EXPORTER_NAMES[c]: clients | ({c} if c in EXPORTER_INGEST else set())
        for c, (_, clients) in EXPORTER_FLOWS.items()
    }
    assert {server: clients for server, (clients, _) in found.items()} == FLOWS | exporters
    for chart, (port, _) in EXPORTER_FLOWS.items():
        ingest = {EXPORTER_INGEST[chart][0]} if chart in EXPORTER_INGEST else set()
        assert found[EXPORTER_NAMES[chart]][1] == {port} | ingest
    for chart, (port, protocol) in EXPORTER_INGEST.items():
        (policy,) = [
            p
            for p in by_kind(objects, "NetworkPolicy")
            if p["spec"]["podSelector"]["matchLabels"][NAME] == EXPORTER_NAMES[chart]
        ]
        sender = {NAME: chart, "app.kubernetes.io/instance": "mlops"}
        assert policy["spec"]["ingress"][0] == {
            "from": [{"podSelector": {"matchLabels": sender}}],
            "ports": [{"port": port, "protocol": protocol}],
        }
    for server, (clients, ports) in found.items():
        assert bool(ports) == bool(clients), f"{server}: admit clients on named ports only"
        assert ports <= container_ports(objects, server), f"{server}: {ports} are not its ports"
    pods = {pod_labels(w).get(NAME) for w in workloads(objects)}
    assert set(FLOWS) | {c for clients in FLOWS.values() for c in clients} <= pods


def test_each_policy_admits_its_own_charts_helm_test_pod_only() -> None:
    """All charts share the release name `mlops`: each policy's test rule names its own chart, so a
    chart's test pod reaches its own Service and no other (through this rule), on a client port."""
    objects = umbrella()
    found = policies(objects)
    tests = {pod["metadata"]["labels"][NAME]: pod for pod in helm_test_pods(objects)}
    assert set(tests) == set(FLOWS)
    for policy in by_kind(objects, "NetworkPolicy"):
        server = policy["spec"]["podSelector"]["matchLabels"][NAME]
        if is_exporter_object(policy):
            assert helm_test_rules(policy) == [], f"{server}: the test pod calls the main server"
            continue
        (rule,) = helm_test_rules(policy)
        assert rule["from"] == [helm_test_peer(server, release="mlops")], server
        labels = rule["from"][0]["podSelector"]["matchLabels"]
        admitted = [
            n for n, pod in tests.items() if labels.items() <= pod["metadata"]["labels"].items()
        ]
        assert admitted == [server]
        assert {p["port"] for p in rule["ports"]} <= container_ports(objects, server)
        assert len(rule["ports"]) == 1, f"{server}: only the port its test pod calls"
        if found[server][1]:
            assert {p["port"] for p in rule["ports"]} <= found[server][1]


def configs(objects: list[dict[str, Any]], app: str) -> list[str]:
    return [
        text
        for cm in by_kind(objects, "ConfigMap")
        if cm["metadata"]["labels"][NAME] == app
        for text in cm.get("data", {}).values()
    ]


def test_every_connection_a_component_makes_is_admitted() -> None:
    """The flows derived from the pods' own configuration (hosts in env, args, ConfigMaps) are
    all allowed by the server's policy — a policy that blocks the platform fails here."""
    objects = umbrella()
    found = policies(objects)
    service_app = {
        svc["metadata"]["name"]: svc["spec"]["selector"][NAME]
        for svc in by_kind(objects, "Service")
    }
    needed = set()
    for workload in workloads(objects):
        client = pod_labels(workload)[NAME]
        for scheme, host, _, _ in hosts_in_workloads([workload]):
            server = service_app.get(host.split(".")[0])
            if scheme != "s3" and server and server != client:
                needed.add((client, server))
    for cm in by_kind(objects, "ConfigMap"):
        client = cm["metadata"]["labels"][NAME]
        for _, host, _, _ in hosts_in_configs([cm]):
            server = service_app.get(host.split(".")[0])
            if server and server != client:
                needed.add((client, server))
    if any("job_name: fastapi" in text for text in configs(objects, "prometheus")):
        needed.add(("prometheus", "fastapi"))  # found by Kubernetes discovery, not by a URL
    assert {("airflow", "postgres"), ("grafana", "prometheus"), ("prometheus", "fastapi")} <= needed
    blocked = [f"{c} -> {s}" for c, s in sorted(needed) if c not in found[s][0]]
    assert not blocked, f"NetworkPolicies block: {blocked}"


def test_network_policies_can_be_switched_off_per_component() -> None:
    off = {name: {"networkPolicy": {"enabled": False}} for name in FLOWS}
    assert not by_kind(umbrella(off), "NetworkPolicy")


def test_every_pod_label_names_its_chart() -> None:
    """Policies select clients by app.kubernetes.io/name: every pod must carry its chart's (an
    exporter's, its own: conftest.EXPORTER_NAMES)."""
    for chart in COMPONENTS:
        for workload in workloads(render_chart(chart)):
            name = EXPORTER_NAMES[chart] if is_exporter_object(workload) else chart
            assert pod_labels(workload).get(NAME) == name, workload["metadata"]["name"]


def notes(*args: str) -> str:
    ensure_dependencies(UMBRELLA)
    out = helm(
        "install",
        "mlops",
        str(CHARTS_DIR / UMBRELLA),
        "-n",
        "mlops",
        "--dry-run=client",
        *required_values(UMBRELLA),
        *args,
    )
    return out.split("NOTES:", 1)[1]


def test_notes_list_the_port_forwards_of_enabled_components() -> None:
    text = notes()
    for service, port in [("airflow-webserver", 8080), ("mlflow", 5000), ("streamlit", 8501)]:
        assert f"kubectl port-forward svc/{service} {port}:{port} -n mlops" in text
    assert "svc/grafana" not in notes("--set", "grafana.enabled=false")


# --- room to upgrade: requests from measured use (docs/BENCHMARKS.md, "Resources") ---

MIB = 2**20
# The rule docs/BENCHMARKS.md states: request >= peak x 1.25, limit >= 2 x peak.
REQUEST_MARGIN, LIMIT_MARGIN = 1.25, 2.0


def quantity_bytes(text: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return float(text[:-2]) * units[text[-2:]] if text[-2:] in units else float(text)


def quantity_cpus(text: str) -> float:
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def running_requests(objects: list[dict[str, Any]]) -> tuple[float, float]:
    """CPU and memory requested by what keeps running (Deployments, StatefulSets), replicas
    counted; init containers and hook Jobs end, so they are not in the steady total."""
    cpu = memory = 0.0
    for obj in objects:
        if obj["kind"] in {"Deployment", "StatefulSet"}:
            for container in obj["spec"]["template"]["spec"]["containers"]:
                requests = container["resources"]["requests"]
                cpu += quantity_cpus(str(requests["cpu"])) * obj["spec"].get("replicas", 1)
                memory += quantity_bytes(str(requests["memory"])) * obj["spec"].get("replicas", 1)
    return cpu, memory


def measured_rows() -> list[tuple[list[str], float, str, str, str]]:
    """docs/BENCHMARKS.md's resource table: (containers, peak MiB, memory request, memory
    limit, CPU request) of each measured row."""
    text = (REPO / "docs" / "BENCHMARKS.md").read_text()
    section = text.split("## Resources: requests from measured use", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) != 6 or not cells[1].endswith(" MiB"):
            continue
        containers = re.findall(r"`([\w*-]+/[\w-]+)`", cells[0])
        request = re.sub(r"[*`]", "", cells[3]).split(" (")[0]
        cpu = cells[5].split(" (")[0]
        rows.append((containers, float(cells[1].split()[0]), request, cells[4], cpu))
    return rows


def test_default_requests_leave_room_to_upgrade_on_the_guides_minikube() -> None:
    cpu, memory = running_requests(umbrella())
    assert cpu <= 3.0, f"{cpu:.2f} CPU requested"
    assert memory <= 7 * 2**30, f"{memory / 2**30:.2f} GiB requested"
    said = f"{cpu:.1f} CPU and {memory / 2**30:.1f} GiB"
    assert said in (REPO / "docs" / "BENCHMARKS.md").read_text().replace("**", "")
    for guide in ("deployment.md", "deployment.es.md"):
        text = (REPO / "docs" / guide).read_text()
        assert f"{cpu:.1f} CPU" in text, guide
        assert f"{memory / 2**30:.1f} GiB" in text.replace(",", "."), guide


def test_resources_follow_the_measurements() -> None:
    """Each measured container's request and limit are the table's, and keep the margins."""
    containers = {
        f"{obj['metadata']['name']}/{c['name']}": c
        for obj in umbrella()
        if obj["kind"] in {"Deployment", "StatefulSet", "Job"}
        for c in [
            *obj["spec"]["template"]["spec"].get("initContainers", []),
            *obj["spec"]["template"]["spec"]["containers"],
        ]
    }
    rows = measured_rows()
    assert len(rows) >= 10
    for names, peak, request, limit, cpu in rows:
        for pattern in names:
            matched = [n for n in containers if fnmatch.fnmatch(n, pattern)]
            assert matched, pattern
            for name in matched:
                resources = containers[name]["resources"]
                assert resources["requests"]["memory"] == request, name
                assert resources["limits"]["memory"] == limit, name
                assert str(resources["requests"]["cpu"]) == cpu, name
                assert quantity_bytes(request) >= peak * MIB * REQUEST_MARGIN, name
                assert quantity_bytes(limit) >= peak * MIB * LIMIT_MARGIN, name
