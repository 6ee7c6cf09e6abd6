"""The conventions of charts/README.md, checked on every chart in charts/."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.charts.conftest import (
    ALL_CHARTS,
    CHARTS,
    CHARTS_DIR,
    COMPONENTS,
    SERVICES,
    UMBRELLA,
    HelmError,
    all_containers,
    by_kind,
    helm,
    pod_labels,
    pod_spec,
    render_chart,
    required_values,
    workloads,
)

# Charts with their own workloads (the umbrella's come from its dependencies, checked there).
WORKLOAD_CHARTS = [c for c in ALL_CHARTS if c != UMBRELLA and workloads(render_chart(c))]
LABELS = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
    "app",
]


def schema_of(chart: str) -> dict[str, Any]:
    return json.loads((CHARTS_DIR / chart / "values.schema.json").read_text())


@pytest.mark.parametrize("chart", ALL_CHARTS)
def test_chart_files_and_metadata(chart: str) -> None:
    root = CHARTS_DIR / chart
    meta = yaml.safe_load((root / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == chart
    assert meta.get("version")
    assert meta.get("appVersion")
    assert meta.get("description")
    for name in [
        "values.yaml",
        "values.schema.json",
        "templates/_helpers.tpl",
        "templates/NOTES.txt",
    ]:
        assert (root / name).is_file(), f"charts/{chart}/{name} is missing"
    schema = schema_of(chart)
    assert schema.get("additionalProperties") is False, "the schema must reject unknown keys"


_KEY = re.compile(r"^(\s*)([A-Za-z0-9_.-]+):")
_KUBERNETES_BLOCKS = {"resources", "livenessProbe", "readinessProbe", "startupProbe"}


def _undocumented_keys(chart: str) -> list[str]:
    """Keys of values.yaml that the schema declares and that have no comment line above them."""
    lines = (CHARTS_DIR / chart / "values.yaml").read_text().splitlines()
    schema = schema_of(chart)
    stack: list[tuple[int, str]] = []
    missing = []
    previous = ""
    for line in lines:
        match = _KEY.match(line)
        if match and not line.lstrip().startswith("#"):
            indent, key = len(match.group(1)), match.group(2)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            parent: dict[str, Any] | None = schema
            for _, name in stack:
                parent = (parent or {}).get("properties", {}).get(name)
            stack.append((indent, key))
            declared = parent is not None and key in parent.get("properties", {})
            # Kubernetes' own fields (resources, probe timing) are documented by their parent.
            kubernetes_field = any(name in _KUBERNETES_BLOCKS for _, name in stack[:-1])
            if declared and not kubernetes_field and not previous.startswith("#"):
                missing.append(".".join(name for _, name in stack))
        if line.strip():
            previous = line.strip()
    return missing


@pytest.mark.parametrize("chart", ALL_CHARTS)
def test_every_values_key_is_documented(chart: str) -> None:
    assert _undocumented_keys(chart) == [], "add a comment line above these keys"


@pytest.mark.parametrize("chart", ALL_CHARTS)
def test_schema_rejects_unknown_keys(chart: str) -> None:
    with pytest.raises(HelmError, match="additional properties 'colour' not allowed"):
        render_chart(chart, {"colour": "blue"})


@pytest.mark.parametrize("chart", WORKLOAD_CHARTS)
def test_schema_rejects_wrong_types_and_latest(chart: str) -> None:
    with pytest.raises(HelmError, match=r"/resources.*got string, want object"):
        render_chart(chart, {"resources": "plenty"})
    with pytest.raises(HelmError, match=r"/image/tag"):
        render_chart(chart, {"image": {"tag": "latest"}})
    with pytest.raises(HelmError, match=r"/service/port.*got string, want integer"):
        render_chart(chart, {"service": {"port": "http"}})
    with pytest.raises(HelmError, match=r"/resources.: missing property .limits."):
        render_chart(chart, {"resources": {"limits": None}})


@pytest.mark.parametrize("chart", ALL_CHARTS)
def test_every_object_has_the_standard_labels(chart: str) -> None:
    for obj in render_chart(chart):
        labels = obj["metadata"].get("labels", {})
        missing = [label for label in LABELS if label not in labels]
        assert not missing, f"{obj['kind']}/{obj['metadata']['name']} lacks labels {missing}"
        assert labels["app.kubernetes.io/instance"] == chart
        # The umbrella's objects come from its dependencies and keep their chart's `app`.
        assert labels["app"] == chart or (chart == UMBRELLA and labels["app"] in COMPONENTS)


@pytest.mark.parametrize("chart", WORKLOAD_CHARTS)
def test_selectors_match_pod_labels(chart: str) -> None:
    objects = render_chart(chart)
    pods = [pod_labels(w) for w in workloads(objects)]
    for workload in workloads(objects):
        if workload["kind"] in {"Deployment", "StatefulSet"}:
            selector = workload["spec"]["selector"]["matchLabels"]
            assert selector.items() <= pod_labels(workload).items()
            assert not any("version" in key for key in selector), "selectors must stay stable"
    for service in by_kind(objects, "Service"):
        selector = service["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in pods), (
            f"Service {service['metadata']['name']} selects no pod of the chart"
        )


@pytest.mark.parametrize("chart", WORKLOAD_CHARTS)
def test_pods_are_hardened(chart: str) -> None:
    for workload in workloads(render_chart(chart)):
        spec = pod_spec(workload)
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert "automountServiceAccountToken" in spec, f"{where}: say whether the token is mounted"
        for container in all_containers(workload):
            ctx = container.get("securityContext", {})
            name = f"{where} container {container['name']}"
            assert ctx.get("allowPrivilegeEscalation") is False, name
            assert "ALL" in ctx.get("capabilities", {}).get("drop", []), name
            assert ctx.get("privileged") in (None, False), name
            assert "readOnlyRootFilesystem" in ctx, f"{name}: set readOnlyRootFilesystem"
            if chart in CHARTS:
                assert ctx["readOnlyRootFilesystem"] is True, name


@pytest.mark.parametrize("chart", WORKLOAD_CHARTS)
def test_every_container_has_requests_and_limits(chart: str) -> None:
    for workload in workloads(render_chart(chart)):
        for container in all_containers(workload):
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert resource in resources.get(kind, {}), (
                        f"{workload['metadata']['name']}/{container['name']}: {kind}.{resource}"
                    )


@pytest.mark.parametrize("chart", WORKLOAD_CHARTS)
def test_long_running_containers_have_probes(chart: str) -> None:
    for workload in workloads(render_chart(chart)):
        if workload["kind"] in {"Job", "CronJob"}:
            continue
        for container in pod_spec(workload)["containers"]:
            name = f"{workload['metadata']['name']}/{container['name']}"
            assert "livenessProbe" in container, f"{name} has no livenessProbe"
            assert "readinessProbe" in container, f"{name} has no readinessProbe"


@pytest.mark.parametrize("chart", WORKLOAD_CHARTS)
def test_images_are_pinned(chart: str) -> None:
    for workload in workloads(render_chart(chart)):
        for container in all_containers(workload):
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1], f"{image}: no tag"
            assert not image.endswith(":latest"), f"{image}: pin a version"
            assert container["imagePullPolicy"] in {"IfNotPresent", "Always", "Never"}


@pytest.mark.parametrize("chart", sorted(SERVICES))
def test_guide_release_gives_design_service_names_and_ports(chart: str) -> None:
    """`helm install NAME ./NAME -n mlops` yields DESIGN.md's Service names and ports."""
    services = {
        s["metadata"]["name"]: s
        for s in by_kind(render_chart(chart), "Service")
        if s["spec"].get("clusterIP") != "None"
    }
    expected = SERVICES[chart]
    assert set(services) == set(expected)
    for name, ports in expected.items():
        assert [p["port"] for p in services[name]["spec"]["ports"]] == ports
        assert services[name]["metadata"]["namespace"] == "mlops"


@pytest.mark.parametrize("chart", sorted(SERVICES))
def test_notes_say_how_to_reach_the_service(chart: str) -> None:
    out = helm(
        "install",
        chart,
        str(CHARTS_DIR / chart),
        "-n",
        "mlops",
        "--dry-run=client",
        *required_values(chart),
    )
    notes = out.split("NOTES:", 1)[1]
    service, ports = next(iter(SERVICES[chart].items()))
    assert f"kubectl port-forward svc/{service} " in notes or f"{service}:{ports[-1]}" in notes
    assert "Next" in notes


@pytest.mark.parametrize("chart", WORKLOAD_CHARTS)
def test_volume_claims_carry_the_app_label(chart: str) -> None:
    """The guide deletes volumes with `kubectl delete pvc -l "app in (...)"`."""
    objects = render_chart(chart)
    claims = [o["metadata"] for o in by_kind(objects, "PersistentVolumeClaim")]
    for sts in by_kind(objects, "StatefulSet"):
        claims += [t["metadata"] for t in sts["spec"].get("volumeClaimTemplates", [])]
    for claim in claims:
        assert claim["labels"]["app"] == chart, claim["name"]


def test_full_name_follows_release_and_overrides() -> None:
    renamed = render_chart("redis", release="broker")
    assert {s["metadata"]["name"] for s in by_kind(renamed, "Service")} == {"broker-redis"}
    overridden = render_chart("redis", {"fullnameOverride": "celery-broker"})
    assert {s["metadata"]["name"] for s in by_kind(overridden, "Service")} == {"celery-broker"}
