"""The staged install's charts rendered together (release = chart name, as in the guide): every
Secret name/key a pod reads is produced by the secrets chart, and every host a configuration
points at is a Service that one of the charts renders. The umbrella's render: test_umbrella.py."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.charts.conftest import (
    CHARTS,
    COMPONENTS,
    EXPORTER_NAMES,
    FLOWS,
    SERVICES,
    all_containers,
    by_kind,
    client_rules,
    is_exporter_object,
    one,
    pod_labels,
    pod_spec,
    render_chart,
    workloads,
)

LOCAL = {"localhost", "127.0.0.1", "0.0.0.0"}
URL = re.compile(r"\b([a-z][a-z0-9+.-]*)://(?:[^@/\s\"']*@)?([A-Za-z0-9.$()_-]+)(?::(\d+))?")


def rendered() -> dict[str, list[dict[str, Any]]]:
    return {chart: render_chart(chart) for chart in COMPONENTS}


def services(objects: dict[str, list[dict[str, Any]]]) -> set[tuple[str, int]]:
    return {
        (svc["metadata"]["name"], port["port"])
        for chart_objects in objects.values()
        for svc in by_kind(chart_objects, "Service")
        for port in svc["spec"]["ports"]
    }


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion with the container's literal values."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def secret_references(objects: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    """(workload/container, secret name, key or None for a whole-Secret reference)."""
    refs = []
    for workload in workloads(objects):
        for container in all_containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.append((where, ref["name"], ref["key"]))
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    refs.append((where, source["secretRef"]["name"], None))
        for volume in pod_spec(workload).get("volumes", []):
            if "secret" in volume:
                name = volume["secret"]["secretName"]
                keys = [item["key"] for item in volume["secret"].get("items", [])] or [None]
                refs += [(workload["metadata"]["name"], name, key) for key in keys]
    return refs


def test_every_secret_reference_resolves() -> None:
    objects = rendered()
    produced = {
        s["metadata"]["name"]: set(s.get("data", {})) | set(s.get("stringData", {}))
        for s in by_kind(objects["secrets"], "Secret")
    }
    problems = []
    count = 0
    for chart, chart_objects in objects.items():
        for where, name, key in secret_references(chart_objects):
            count += 1
            if name not in produced:
                problems.append(f"{chart}: {where} reads Secret {name}, which no chart makes")
            elif key is not None and key not in produced[name]:
                problems.append(
                    f"{chart}: {where} reads {name}/{key}; it has {sorted(produced[name])}"
                )
    assert not problems, "\n".join(problems)
    assert count >= 15, "the charts should read their credentials from the secrets chart"


def hosts_in_workloads(objects: list[dict[str, Any]]) -> list[tuple[str, str, int | None, str]]:
    found = []
    for workload in workloads(objects):
        for container in all_containers(workload):
            env: dict[str, str] = {}
            for item in container.get("env", []):  # in order, as Kubernetes expands them
                if "value" in item:
                    env[item["name"]] = expand(item["value"], env)
            texts = [*env.values(), *container.get("args", []), *container.get("command", [])]
            for text in texts:
                for scheme, host, port in URL.findall(expand(text, env)):
                    found.append((scheme, host, int(port) if port else None, container["name"]))
    return found


def hosts_in_configs(objects: list[dict[str, Any]]) -> list[tuple[str, str, int | None, str]]:
    found = []
    for cm in by_kind(objects, "ConfigMap"):
        for key, text in cm.get("data", {}).items():
            for scheme, host, port in URL.findall(text):
                found.append(
                    (scheme, host, int(port) if port else None, f"{cm['metadata']['name']}/{key}")
                )
    return found


def test_every_host_is_a_rendered_service() -> None:
    objects = rendered()
    known = services(objects)
    names = {name for name, _ in known}
    problems = []
    checked = set()
    for chart, chart_objects in objects.items():
        for scheme, host, port, where in hosts_in_workloads(chart_objects) + hosts_in_configs(
            chart_objects
        ):
            if scheme == "s3" or host in LOCAL:
                continue  # s3://BUCKET/..., loopback
            if "." in host and host.split(".")[0] not in names:
                continue  # an outside URL in a comment or an annotation (docs links)
            service = host.split(".")[0]
            checked.add(service)
            if port is None and service not in names:
                problems.append(f"{chart} {where}: {host} is no Service")
            elif port is not None and (service, port) not in known:
                problems.append(f"{chart} {where}: {host}:{port} is no Service port")
    assert not problems, "\n".join(problems)
    assert {"postgres", "minio", "prometheus"} <= checked


def test_scrape_target_is_the_fastapi_service_of_the_contract() -> None:
    for mode in ("kubernetes", "static"):
        cm = one(
            render_chart("prometheus", {"scrape": {"fastapi": {"discovery": mode}}}), "ConfigMap"
        )
        job = next(
            j
            for j in yaml.safe_load(cm["data"]["prometheus.yml"])["scrape_configs"]
            if j["job_name"] == "fastapi"
        )
        if mode == "static":
            host, port = job["static_configs"][0]["targets"][0].split(":")
        else:
            keep = {
                r["source_labels"][0]: r["regex"]
                for r in job["relabel_configs"]
                if r.get("action") == "keep"
            }
            host = keep["__meta_kubernetes_service_name"]
            port = keep["__meta_kubernetes_endpointslice_port"]
        assert (host, int(port)) in services(rendered())


def test_databases_and_bucket_agree_across_charts() -> None:
    objects = rendered()
    script = one(objects["postgres"], "ConfigMap", "postgres-init")["data"]["10-databases.sh"]
    created = set(re.findall(r"^create_database (\w+) ", script, re.M))
    pg_secret = one(objects["secrets"], "Secret", "postgres-credentials")
    assert created == {
        k.removesuffix("-password")
        for k in pg_secret["data"]
        if k not in {"postgres-password", "reader-password"} and k.endswith("-password")
    }
    # The read-only role (streamlit-credentials' db-username) reads databases that exist.
    read = set(re.findall(r"^grant_reader (\w+) ", script, re.M))
    assert read
    assert read <= created
    mlflow_env = {
        e["name"]: e.get("value")
        for e in pod_spec(one(objects["mlflow"], "Deployment"))["containers"][0]["env"]
    }
    assert mlflow_env["DB_NAME"] in created
    job_env = {
        e["name"]: e.get("value")
        for e in pod_spec(one(objects["minio"], "Job"))["containers"][0]["env"]
    }
    args = pod_spec(one(objects["mlflow"], "Deployment"))["containers"][0]["args"]
    destination = args[args.index("--artifacts-destination") + 1]
    assert destination.startswith(f"s3://{job_env['BUCKET']}/"), (
        "MLflow must write to the bucket the Job creates"
    )


def test_every_pod_carries_its_chart_name_for_network_policies() -> None:
    """Policies admit clients by app.kubernetes.io/name only: every pod of a chart (Job pods too,
    e.g. minio's bucket Job, which its own server's policy admits as `minio`) carries it; an
    exporter's pods carry their own (conftest.EXPORTER_NAMES), which postgres admits."""
    for chart, chart_objects in rendered().items():
        for workload in workloads(chart_objects):
            name = EXPORTER_NAMES[chart] if is_exporter_object(workload) else chart
            assert pod_labels(workload)["app.kubernetes.io/name"] == name, (
                f"{workload['kind']}/{workload['metadata']['name']}"
            )


def test_network_policies_admit_the_contract_flows_on_the_service_ports() -> None:
    """Packages 1-2, one Service port each; all charts' policies: test_umbrella.py."""
    objects = rendered()
    for server, clients in FLOWS.items():
        if server not in CHARTS:
            continue
        policy = one(objects[server], "NetworkPolicy", server)
        service = one(objects[server], "Service", server)
        selector = policy["spec"]["podSelector"]["matchLabels"]
        assert selector.items() <= service["spec"]["selector"].items(), server
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        rules = client_rules(policy)  # the `helm test` pod's rule: test_network_policies.py
        admitted = {
            peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
            for rule in rules
            for peer in rule["from"]
        }
        assert admitted == clients, server
        if not clients:
            assert rules == [], f"{server}: no client means no ingress rule at all"
            continue
        # The policy's ports are the pod ports behind the Service's (a policy matches the pod's
        # port, after the Service's translation): DESIGN.md's port numbers by default.
        (rule,) = rules
        served = [
            w
            for w in workloads(objects[server])
            if service["spec"]["selector"].items() <= pod_labels(w).items()
        ]
        assert len(served) == 1, f"{server}: the Service must select the server's pods only"
        pod_ports = {
            p["name"]: p["containerPort"]
            for c in all_containers(served[0])
            for p in c.get("ports", [])
        }
        behind = [pod_ports[p["targetPort"]] for p in service["spec"]["ports"]]
        assert rule["ports"] == [{"port": port, "protocol": "TCP"} for port in behind], server
        assert behind == SERVICES[server][server]
