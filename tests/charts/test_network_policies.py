"""The NetworkPolicy of every chart with a Service (charts/README.md, "shared contract"): one
policy selecting the chart's pods (and one more selecting an exporter's: conftest.EXPORTER_FLOWS),
admitting the clients of FLOWS (in the order of the chart's values) plus `extraFrom`, on the pod
ports behind the chart's Service(s) — a policy matches the pod's port, after the Service's
translation — and nothing in-cluster when both lists are empty; with tests.enabled, one more rule
admitting the chart's own `helm test` pod on the port it calls (conftest.helm_test_rule), the only
rule when no client is listed.

Checked chart by chart on the staged install; the umbrella's policies are test_umbrella.py's, the
flows between packages 1-2 test_cross_references.py's."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.charts.conftest import (
    CHARTS_DIR,
    COMPONENTS,
    EXPORTER_FLOWS,
    EXPORTER_INGEST,
    EXPORTER_NAMES,
    EXPORTER_VALUES,
    FLOWS,
    HelmError,
    all_containers,
    by_kind,
    client_rules,
    exporter_rules,
    helm_test_pods,
    helm_test_rule,
    helm_test_rules,
    is_exporter_object,
    one,
    pod_labels,
    render_chart,
    workloads,
)

# Every chart with a Service renders a policy: the servers of FLOWS, in the guide's order.
POLICY_CHARTS = [chart for chart in COMPONENTS if chart in FLOWS]
# The pod ports of charts/README.md's flows table (DESIGN.md's numbers, datasource's 80 -> 8000).
POD_PORTS = {
    "postgres": [5432],
    "redis": [6379],
    "minio": [9000, 9001],
    "mlflow": [5000],
    "prometheus": [9090],
    "grafana": [3000],
    "airflow": [8080, 8793, 8794],
    "fastapi": [8989],
    "streamlit": [8501],
    "datasource": [8000],
}
# Policy ports no Service fronts: Airflow's worker (8793) and triggerer (8794) log servers, which
# the api-server reaches pod to pod.
NOT_BEHIND_A_SERVICE = {"airflow": [8793, 8794]}
# extraFrom peers: appended as they are, after the allowed clients.
EXTRA_PEERS = [
    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
    {"ipBlock": {"cidr": "10.0.0.0/8"}},
]
LONG_RUNNING = {"Deployment", "StatefulSet", "DaemonSet"}

per_chart = pytest.mark.parametrize("chart", POLICY_CHARTS)


def peer(name: str) -> dict[str, Any]:
    return {"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}}


def policy(chart: str, values: dict | None = None) -> dict[str, Any]:
    return one(render_chart(chart, values), "NetworkPolicy", chart)


def default_clients(chart: str) -> list[str]:
    values = yaml.safe_load((CHARTS_DIR / chart / "values.yaml").read_text())
    return values["networkPolicy"]["allowedClients"]


def pods_behind(objects: list[dict[str, Any]], service: dict[str, Any]) -> list[dict[str, Any]]:
    selector = service["spec"]["selector"].items()
    return [w for w in workloads(objects) if selector <= pod_labels(w).items()]


def container_ports(workload: dict[str, Any]) -> dict[str, int]:
    ports = (p for c in all_containers(workload) for p in c.get("ports", []))
    return {p["name"]: p["containerPort"] for p in ports}


def ports_behind_services(objects: list[dict[str, Any]], exporter: bool = False) -> list[int]:
    """The numeric pod ports the chart's Services target, in order, each once: the main
    server's, or with ``exporter`` its exporter's (EXPORTER_FLOWS)."""
    found: list[int] = []
    for service in by_kind(objects, "Service"):
        if is_exporter_object(service) != exporter:
            continue
        behind = pods_behind(objects, service)
        assert behind, f"Service {service['metadata']['name']} selects no pod"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for workload in behind:
                number = target if isinstance(target, int) else container_ports(workload)[target]
                if number not in found:
                    found.append(number)
    return found


def expected_ports(chart: str, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ports = ports_behind_services(objects) + NOT_BEHIND_A_SERVICE.get(chart, [])
    assert ports == POD_PORTS[chart], "the documented pod ports"
    return [{"port": port, "protocol": "TCP"} for port in ports]


def expected_test_rule(chart: str, objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The `helm test` pod's rule: the pod port behind the Service's first port (what the pod
    calls: S3 for minio, the api-server for Airflow), not the others."""
    return helm_test_rule(chart, ports_behind_services(objects)[:1])


def test_every_chart_with_a_service_and_only_those_render_a_policy() -> None:
    assert set(POLICY_CHARTS) == set(FLOWS) == set(POD_PORTS)
    for chart in COMPONENTS:
        objects = render_chart(chart)
        expected = (1 if chart in FLOWS else 0) + (1 if chart in EXPORTER_FLOWS else 0)
        assert len(by_kind(objects, "NetworkPolicy")) == expected, chart
        assert bool(by_kind(objects, "Service")) == bool(expected), chart


@per_chart
def test_default_policy_admits_the_contract_clients_on_the_pod_ports(chart: str) -> None:
    objects = render_chart(chart)
    found = one(objects, "NetworkPolicy", chart)
    spec = found["spec"]
    # The chart's pods: the selector labels its servers share (name and instance only); an
    # exporter's pods are another server's, with a policy of their own (below).
    servers = [
        w for w in workloads(objects) if w["kind"] in LONG_RUNNING and not is_exporter_object(w)
    ]
    shared = set.intersection(*(set(w["spec"]["selector"]["matchLabels"].items()) for w in servers))
    labels = {"app.kubernetes.io/name": chart, "app.kubernetes.io/instance": chart}
    assert spec["podSelector"] == {"matchLabels": labels}
    assert set(labels.items()) == shared
    selected = [w for w in workloads(objects) if labels.items() <= pod_labels(w).items()]
    for service in by_kind(objects, "Service"):
        if is_exporter_object(service):
            continue
        for workload in pods_behind(objects, service):
            assert workload in selected, f"{service['metadata']['name']}: {workload['metadata']}"
    assert spec["policyTypes"] == ["Ingress"]
    clients = default_clients(chart)
    assert set(clients) == FLOWS[chart]
    assert len(clients) == len(FLOWS[chart]), "each client once"
    assert helm_test_rules(found) == [expected_test_rule(chart, objects)], "the last rule"
    # An exporter's scrapers: a policy of its own, selecting exactly the pods behind its
    # Service (none of the main server's), admitting them on its port only.
    assert exporter_rules(found) == []
    if chart in EXPORTER_FLOWS:
        port, scrapers = EXPORTER_FLOWS[chart]
        ingest = []
        if chart in EXPORTER_INGEST:  # the chart's own pods send to the exporter
            in_port, protocol = EXPORTER_INGEST[chart]
            assert ports_behind_services(objects, exporter=True) == [port, in_port]
            ingest = [
                {
                    "from": [{"podSelector": {"matchLabels": labels}}],
                    "ports": [{"port": in_port, "protocol": protocol}],
                }
            ]
        else:
            assert ports_behind_services(objects, exporter=True) == [port]
        names = yaml.safe_load((CHARTS_DIR / chart / "values.yaml").read_text())[
            EXPORTER_VALUES[chart]
        ]["networkPolicy"]["allowedClients"]
        assert set(names) == scrapers
        exporter = one(objects, "NetworkPolicy", EXPORTER_NAMES[chart])
        own = {"app.kubernetes.io/name": EXPORTER_NAMES[chart], "app.kubernetes.io/instance": chart}
        assert exporter["spec"]["podSelector"] == {"matchLabels": own}
        assert exporter["spec"]["policyTypes"] == ["Ingress"]
        taken = [w for w in workloads(objects) if own.items() <= pod_labels(w).items()]
        behind = [
            w
            for s in by_kind(objects, "Service")
            if is_exporter_object(s)
            for w in pods_behind(objects, s)
        ]
        assert taken == behind
        assert not any(w in selected for w in taken), "the main policy selects no exporter pod"
        # No main server's selector takes an exporter pod.
        for w in servers:
            assert not w["spec"]["selector"]["matchLabels"].items() <= pod_labels(taken[0]).items()
        assert exporter_rules(exporter) == exporter["spec"]["ingress"]
        assert exporter["spec"]["ingress"] == [
            *ingest,
            {"from": [peer(name) for name in names], "ports": [{"port": port, "protocol": "TCP"}]},
        ]
        listening = {p for w in taken for p in container_ports(w).values()}
        assert port in listening
        if chart in EXPORTER_INGEST:  # from the pods of the main policy (labels), to the exporter's
            assert EXPORTER_INGEST[chart][0] in listening
    assert spec["ingress"] == [*client_rules(found), *helm_test_rules(found)]
    if not clients:
        assert client_rules(found) == [], "no in-cluster client: port-forward or extraFrom"
        return
    ports = expected_ports(chart, objects)
    assert client_rules(found) == [{"from": [peer(name) for name in clients], "ports": ports}]
    # Every port admitted is one the selected pods listen on (Airflow's log servers too).
    listening = {port for workload in selected for port in container_ports(workload).values()}
    assert {p["port"] for p in ports} <= listening


@per_chart
def test_ports_follow_the_pod_port_not_the_service_port(chart: str) -> None:
    values = {"service": {"port": 18080}, "networkPolicy": {"allowedClients": ["ui"]}}
    objects = render_chart(chart, values)
    service_ports = [p["port"] for s in by_kind(objects, "Service") for p in s["spec"]["ports"]]
    assert 18080 in service_ports, "the Service port did change"
    found = one(objects, "NetworkPolicy", chart)
    assert client_rules(found) == [{"from": [peer("ui")], "ports": expected_ports(chart, objects)}]
    assert helm_test_rules(found) == [expected_test_rule(chart, objects)]


@per_chart
def test_policy_can_be_turned_off(chart: str) -> None:
    off = render_chart(chart, {"networkPolicy": {"enabled": False}})
    assert by_kind(off, "NetworkPolicy") == []


@per_chart
def test_no_client_admits_nothing_in_cluster(chart: str) -> None:
    nobody = {"networkPolicy": {"allowedClients": []}, "tests": {"enabled": False}}
    # An exporter's scrapers are its own policy's (test_streamlit.py empties that list too).
    assert policy(chart, nobody)["spec"]["ingress"] == []
    # With the `helm test` pod: its rule alone.
    objects = render_chart(chart, {"networkPolicy": {"allowedClients": []}})
    found = one(objects, "NetworkPolicy", chart)
    assert found["spec"]["ingress"] == [expected_test_rule(chart, objects)]


@per_chart
def test_tests_disabled_admit_no_test_pod(chart: str) -> None:
    objects = render_chart(chart, {"tests": {"enabled": False}})
    assert helm_test_pods(objects) == []
    assert helm_test_rules(one(objects, "NetworkPolicy", chart)) == []


@per_chart
@pytest.mark.parametrize("clients", [None, ["ui"], []], ids=["default", "one", "none"])
def test_extra_peers_come_after_the_clients_on_the_same_ports(
    chart: str, clients: list[str] | None
) -> None:
    values: dict[str, Any] = {"extraFrom": EXTRA_PEERS}
    if clients is not None:
        values["allowedClients"] = clients
    objects = render_chart(chart, {"networkPolicy": values})
    admitted = default_clients(chart) if clients is None else clients
    assert client_rules(one(objects, "NetworkPolicy", chart)) == [
        {"from": [*map(peer, admitted), *EXTRA_PEERS], "ports": expected_ports(chart, objects)}
    ]


@per_chart
def test_schema_rejects_a_client_that_is_not_a_dns_label(chart: str) -> None:
    with pytest.raises(HelmError, match="/networkPolicy/allowedClients/0"):
        render_chart(chart, {"networkPolicy": {"allowedClients": ["Not A Label"]}})
