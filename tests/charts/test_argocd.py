"""deploy/argocd: Argo CD Applications that install the platform from this repository as the
deployment guide does (its three packages as sync waves, release name = chart name), with
automated sync and self-heal. No Argo CD here, so what Argo CD would do is checked: the
structure, the chart paths, and the values each one passes, rendered with helm as Argo CD's
repo-server renders them (`helm template` with the value files relative to the chart folder).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.conftest import (
    CHARTS_DIR,
    COMPONENTS,
    NAMESPACE,
    PACKAGE_1,
    PACKAGE_2,
    PACKAGE_3,
    REPO,
    helm,
    parse_objects,
)

FOLDER = REPO / "deploy" / "argocd"
APPS = sorted((FOLDER / "apps").glob("*.yaml"))
WAVES = {
    **dict.fromkeys(PACKAGE_1, "0"),
    **dict.fromkeys(PACKAGE_2, "1"),
    **dict.fromkeys([*PACKAGE_3, "datasource"], "2"),
}


def load(path: Path) -> dict[str, Any]:
    (document,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return document


def home_repository() -> str:
    meta = yaml.safe_load((CHARTS_DIR / "airflow" / "Chart.yaml").read_text())
    return f"{meta['home']}.git"


def render(app: dict[str, Any]) -> list[dict[str, Any]]:
    """The Application's source as Argo CD renders it: value files relative to the chart."""
    source = app["spec"]["source"]
    chart = REPO / source["path"]
    args = ["template", source["helm"]["releaseName"], str(chart), "-n", NAMESPACE]
    for values in source["helm"].get("valueFiles", []):
        path = (chart / values).resolve()
        assert path.is_relative_to(REPO), f"{values}: Argo CD reads files of the repository only"
        args += ["-f", str(path)]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as inline:
        inline.write(yaml.safe_dump(source["helm"].get("valuesObject") or {}))
        inline.flush()
        return parse_objects(helm(*args, "-f", inline.name))


def test_one_application_per_chart_of_the_guide() -> None:
    names = sorted(load(p)["spec"]["source"]["helm"]["releaseName"] for p in APPS)
    assert names == sorted(COMPONENTS)
    assert sorted(p.stem for p in APPS) == names


@pytest.mark.parametrize("path", APPS, ids=lambda p: p.stem)
def test_application_installs_its_chart_like_the_guide(path: Path) -> None:
    app = load(path)
    assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
    assert app["metadata"]["namespace"] == "argocd"
    assert app["metadata"]["name"] == f"mlops-{path.stem}"
    source = app["spec"]["source"]
    assert source["repoURL"] == home_repository()
    assert source["targetRevision"] == "main"
    assert source["path"] == f"charts/{path.stem}"
    assert (REPO / source["path"] / "Chart.yaml").is_file()
    assert source["helm"]["releaseName"] == path.stem, "release name = chart name, as the guide"
    assert app["spec"]["destination"] == {
        "server": "https://kubernetes.default.svc",
        "namespace": "mlops",
    }
    policy = app["spec"]["syncPolicy"]
    assert policy["automated"] == {"prune": True, "selfHeal": True}
    assert "CreateNamespace=true" in policy["syncOptions"]
    assert app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == WAVES[path.stem]


@pytest.mark.parametrize("path", APPS, ids=lambda p: p.stem)
def test_the_values_each_application_passes_render(path: Path) -> None:
    objects = render(load(path))
    assert objects
    ours = [
        c["image"]
        for o in objects
        if o["kind"] in {"Deployment", "StatefulSet", "Job"}
        for c in o["spec"]["template"]["spec"]["containers"]
        if "platform" in c["image"]
    ]
    if path.stem in {"mlflow", "airflow", "fastapi", "streamlit", "datasource"}:
        platform = yaml.safe_load((REPO / "deploy" / "images" / "platform.yaml").read_text())
        image = f"{platform['image']['repository']}:{platform['image']['tag']}"
        assert ours, path.stem
        assert set(ours) == {image}, "the image CI pushed (deploy/images/platform.yaml)"


def test_airflow_follows_the_repository_argo_cd_installs_from() -> None:
    app = load(FOLDER / "apps" / "airflow.yaml")
    scheduler = next(
        o
        for o in render(app)
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("scheduler")
    )
    sidecar = next(
        c for c in scheduler["spec"]["template"]["spec"]["containers"] if c["name"] == "git-sync"
    )
    flags = dict(a.lstrip("-").split("=", 1) for a in sidecar["args"] if "=" in a)
    assert flags["repo"] == app["spec"]["source"]["repoURL"]
    assert flags["ref"] == app["spec"]["source"]["targetRevision"]


def test_generated_passwords_are_created_once_and_never_replaced() -> None:
    """`helm template` cannot `lookup`, so each render makes new passwords: Argo CD must
    ignore the Secrets' data after creating them, or self-heal would lock every store out."""
    app = load(FOLDER / "apps" / "secrets.yaml")
    assert {"group": "", "kind": "Secret", "jsonPointers": ["/data"]} in app["spec"][
        "ignoreDifferences"
    ]
    assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]
    for stateful in ("secrets", "postgres", "minio"):
        meta = load(FOLDER / "apps" / f"{stateful}.yaml")["metadata"]
        assert "finalizers" not in meta, f"deleting mlops-{stateful} must not delete its data"


def test_the_root_application_installs_the_folder_of_applications() -> None:
    root = load(FOLDER / "root.yaml")
    assert root["kind"] == "Application"
    assert root["spec"]["source"]["path"] == "deploy/argocd/apps"
    assert root["spec"]["source"]["repoURL"] == home_repository()
    assert root["spec"]["destination"]["namespace"] == "argocd"
    assert root["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}


def test_waves_wait_for_health_with_the_argocd_cm_patch() -> None:
    patch = yaml.safe_load((FOLDER / "argocd-cm-patch.yaml").read_text())
    lua = patch["data"]["resource.customizations.health.argoproj.io_Application"]
    assert "obj.status.health.status" in lua
    assert "return hs" in lua


def test_the_guide_explains_them_in_both_languages() -> None:
    for guide in ("deployment.md", "deployment.es.md"):
        text = (REPO / "docs" / guide).read_text()
        assert "kubectl apply -n argocd -f deploy/argocd/root.yaml" in text, guide
        assert "deploy/argocd/argocd-cm-patch.yaml" in text, guide
