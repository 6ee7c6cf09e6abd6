"""charts/airflow: Airflow 3.3 (api-server, scheduler, dag-processor, triggerer, Celery workers)
rendered by the real helm, and checked against the deployment guide's git-sync block, the Secrets
contract of charts/README.md and Airflow 3.3's own CLI and configuration (from the installed
apache-airflow, run in a subprocess with a throwaway AIRFLOW_HOME), and its `helm test` pod."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.charts.conftest import (
    CHARTS_DIR,
    HelmError,
    all_containers,
    by_kind,
    ci_value_files,
    env_of,
    helm,
    helm_test_command,
    is_exporter_object,
    one,
    pod_labels,
    pod_spec,
    readme_secret_keys,
    render_chart,
    required_values,
    workloads,
)

CHART = "airflow"
SECRET = "airflow-credentials"
# The deployment guide's `gitSync:` block (charts section), but for the repository: it has no
# default (the install passes the checkout's own); renders here take ci/required-values.yaml's.
GUIDE_GIT_SYNC = {
    "enabled": True,
    "branch": "main",
    "subPath": "dags",
    "image": {"repository": "registry.k8s.io/git-sync/git-sync", "pullPolicy": "IfNotPresent"},
    "resources": {
        "requests": {"memory": "64Mi", "cpu": "100m"},
        "limits": {"memory": "128Mi", "cpu": "200m"},
    },
}
REQUIRED = yaml.safe_load((CHARTS_DIR / CHART / "ci" / "required-values.yaml").read_text())
DAG_READERS = ["scheduler", "dag-processor", "triggerer", "worker"]
DEPLOYMENTS = ["api-server", *DAG_READERS]
GIT_SYNC_IMAGE = "registry.k8s.io/git-sync/git-sync:"
IMAGE_DAGS = "/opt/airflow/dags"
GIT_DAGS = "/git/repo/dags"
EXECUTORS = ["CeleryExecutor", "LocalExecutor", "KubernetesExecutor"]
# Services of DESIGN.md that Airflow's configuration may point at.
KNOWN_SERVICES = {
    ("postgres", 5432),
    ("redis", 6379),
    ("mlflow", 5000),
    ("fastapi", 8989),
    ("datasource", 80),
    ("airflow-webserver", 8080),
}
URL = re.compile(r"\b([a-z][a-z0-9+.-]*)://(?:([^@/\s\"']*)@)?([A-Za-z0-9.$()_-]+)(?::(\d+))?")

# Every rendering mode the volume and secret checks run on.
MODES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "local": {"executor": "LocalExecutor"},
    "kubernetes": {"executor": "KubernetesExecutor"},
    "kubernetes-no-gitsync": {"executor": "KubernetesExecutor", "gitSync": {"enabled": False}},
    "gitsync-disabled": {"gitSync": {"enabled": False}},
    "umbrella": {"migrateJob": {"helmHook": "post-install,post-upgrade"}},
    "persistence": {"persistence": {"enabled": True}, "executor": "KubernetesExecutor"},
}


def deployment(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    return one(objects, "Deployment", f"airflow-{component}")


def containers_by_name(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in all_containers(obj)}


def pod_template(objects: list[dict[str, Any]]) -> dict[str, Any]:
    cm = one(objects, "ConfigMap", "airflow-pod-template")
    return yaml.safe_load(cm["data"]["pod_template.yaml"])


def pods(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every workload that runs Airflow, plus the KubernetesExecutor pod
    template: all but the statsd-exporter (metrics.*, its own tests below)."""
    found = [
        (w["metadata"]["name"], pod_spec(w))
        for w in workloads(objects)
        if not is_exporter_object(w)
    ]
    if any(o["metadata"]["name"] == "airflow-pod-template" for o in by_kind(objects, "ConfigMap")):
        found.append(("pod-template", pod_template(objects)["spec"]))
    return found


def spec_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def is_git_sync(container: dict[str, Any]) -> bool:
    return container["image"].startswith(GIT_SYNC_IMAGE)


def airflow_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in spec_containers(spec) if not is_git_sync(c)]


def flag(container: dict[str, Any], name: str) -> str | None:
    for arg in container.get("args", []):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


@functools.cache
def airflow_facts() -> dict[str, Any]:
    """What the installed Airflow 3.3 says about the commands and paths the chart relies on."""
    code = """
import json
from airflow.cli.cli_config import ARG_JOB_TYPE_FILTER, ARG_MIGRATION_TIMEOUT, DB_COMMANDS
from airflow.utils import net
from airflow.api_fastapi.core_api.routes.public import public_router
import airflow
print("FACTS" + json.dumps({
    "version": airflow.__version__,
    "job_types": list(ARG_JOB_TYPE_FILTER.kwargs["choices"]),
    "db_commands": {c.name: [f for a in c.args for f in a.flags] for c in DB_COMMANDS},
    "migration_timeout_flags": list(ARG_MIGRATION_TIMEOUT.flags),
    "health_paths": [r.path for r in public_router.routes if r.path.endswith("/health")],
    "host_ip_callable": callable(getattr(net, "get_host_ip_address", None)),
}))
"""
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
        )
    line = next((x for x in result.stdout.splitlines() if x.startswith("FACTS")), None)
    assert line, f"could not inspect the installed Airflow:\n{result.stderr[-3000:]}"
    return json.loads(line.removeprefix("FACTS"))


def airflow_config_options() -> dict[str, set[str]]:
    """Sections and options of Airflow core's config.yml (read as a file, nothing imported)."""
    spec = importlib.util.find_spec("airflow")
    assert spec
    assert spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "config_templates" / "config.yml"
    config = yaml.safe_load(path.read_text())
    return {section: set(body.get("options", {})) for section, body in config.items()}


# --- objects, Service, image ------------------------------------------------------------------


def test_defaults_render_the_guide_objects() -> None:
    objects = render_chart(CHART)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("Deployment", f"airflow-{c}") for c in DEPLOYMENTS} <= names
    assert {("Job", "airflow-migrate"), ("Job", "airflow-create-user")} <= names
    assert ("NetworkPolicy", "airflow") in names
    assert not by_kind(objects, "Ingress"), "the Ingress is off by default"
    assert not by_kind(objects, "PersistentVolumeClaim"), "logs are emptyDirs by default"
    assert not by_kind(objects, "ServiceAccount"), "no RBAC without KubernetesExecutor"
    for obj in objects:
        assert obj["metadata"]["namespace"] == "mlops"


def webserver_service(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The api-server's Service (the other one is the statsd-exporter's, metrics.enabled)."""
    (service,) = [s for s in by_kind(objects, "Service") if not is_exporter_object(s)]
    return service


def test_webserver_service_is_airflow_webserver_8080_on_the_api_server() -> None:
    objects = render_chart(CHART)
    service = webserver_service(objects)
    assert service["metadata"]["name"] == "airflow-webserver"
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(8080, "http")]
    api = deployment(objects, "api-server")
    assert service["spec"]["selector"].items() <= pod_labels(api).items()
    for component in DAG_READERS:
        labels = pod_labels(deployment(objects, component))
        assert not service["spec"]["selector"].items() <= labels.items(), component
    port = pod_spec(api)["containers"][0]["ports"][0]
    assert (port["name"], port["containerPort"]) == ("http", 8080)


def test_service_name_follows_the_release_and_overrides() -> None:
    renamed = render_chart(CHART, release="orchestrator")
    assert webserver_service(renamed)["metadata"]["name"] == "orchestrator-airflow-webserver"
    assert one(renamed, "Service", "orchestrator-airflow-statsd")
    overridden = render_chart(CHART, {"fullnameOverride": "airflow"}, release="mlops")
    assert webserver_service(overridden)["metadata"]["name"] == "airflow-webserver"
    env = env_of(pod_spec(deployment(overridden, "worker"))["containers"][0])
    assert (
        env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]["value"]
        == "http://airflow-webserver:8080/execution/"
    )


def test_every_airflow_container_runs_the_pinned_platform_image() -> None:
    objects = render_chart(CHART)
    for name, spec in pods(objects):
        for container in airflow_containers(spec):
            assert container["image"] == "mlops/platform:0.1.0", f"{name}/{container['name']}"


@pytest.mark.parametrize("mode", sorted(MODES))
def test_commands_run_as_given_with_no_image_entrypoint(mode: str) -> None:
    """The image has no entrypoint: every container and probe names its program; the task pod's
    `base` has no command, as the KubernetesExecutor's `args` (the task's command) run as given."""
    for name, spec in pods(render_chart(CHART, MODES[mode])):
        for container in airflow_containers(spec):
            where = f"{mode}: {name}/{container['name']}"
            if name == "pod-template":
                assert not {"command", "args"} & set(container), where
                continue
            assert container["command"] == ["bash", "-c"], where
            (script,) = container["args"]
            assert re.match(r"(exec airflow |set -)", script), where
            for probe in ("livenessProbe", "readinessProbe"):
                if "exec" in container.get(probe, {}):
                    command = container[probe]["exec"]["command"][-1]
                    assert re.search(r"\bexec (airflow|python) ", command), f"{where} {probe}"


# --- configuration from the environment ---------------------------------------------------------


def test_configuration_comes_from_the_environment() -> None:
    env = env_of(pod_spec(deployment(render_chart(CHART), "scheduler"))["containers"][0])
    value = {name: item.get("value") for name, item in env.items()}
    assert value["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        "postgresql+psycopg2://$(AIRFLOW_DB_USER):$(AIRFLOW_DB_PASSWORD)@postgres:5432/airflow"
    )
    assert value["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert value["AIRFLOW__CELERY__BROKER_URL"] == "redis://:$(REDIS_PASSWORD)@redis:6379/0"
    assert value["AIRFLOW__CELERY__RESULT_BACKEND"] == (
        "db+postgresql+psycopg2://$(AIRFLOW_DB_USER):$(AIRFLOW_DB_PASSWORD)@postgres:5432/airflow"
    )
    assert value["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
        "http://airflow-webserver:8080/execution/"
    )
    assert value["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert value["AIRFLOW__CORE__DAGS_FOLDER"] == GIT_DAGS
    assert value["AIRFLOW__CORE__AUTH_MANAGER"] == (
        "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
    )
    for name, key in [
        ("AIRFLOW__CORE__FERNET_KEY", "fernet-key"),
        ("AIRFLOW__API__SECRET_KEY", "api-secret-key"),
        ("AIRFLOW__API_AUTH__JWT_SECRET", "jwt-secret"),
        ("AIRFLOW_DB_USER", "db-username"),
        ("AIRFLOW_DB_PASSWORD", "db-password"),
        ("REDIS_PASSWORD", "redis-password"),
        ("MLOPS_API_TOKEN", "hook-token"),
    ]:
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": SECRET, "key": key}, name


def test_platform_settings_follow_the_readme_contract() -> None:
    env = env_of(pod_spec(deployment(render_chart(CHART), "worker"))["containers"][0])
    value = {name: item.get("value") for name, item in env.items()}
    assert value["MLOPS_RAW_DB_URL"] == (
        "postgresql+psycopg://$(RAW_DB_USER):$(RAW_DB_PASSWORD)@postgres:5432/rawdata"
    )
    assert value["MLOPS_CLEAN_DB_URL"] == (
        "postgresql+psycopg://$(CLEAN_DB_USER):$(CLEAN_DB_PASSWORD)@postgres:5432/cleandata"
    )
    assert value["MLOPS_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert value["MLOPS_API_URL"] == "http://fastapi:8989"
    assert value["MLOPS_DATASOURCE_URL"] == "http://datasource:80"
    assert value["MLOPS_DATA_SCHEDULE"] == "@hourly"
    assert value["MLOPS_GROUP_NUMBER"] == "1"
    assert value["MLOPS_DAY"] == "Wednesday"
    for name, key in [
        ("RAW_DB_USER", "rawdata-username"),
        ("RAW_DB_PASSWORD", "rawdata-password"),
        ("CLEAN_DB_USER", "cleandata-username"),
        ("CLEAN_DB_PASSWORD", "cleandata-password"),
    ]:
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": SECRET, "key": key}
    names = list(env)
    for url, user in [("MLOPS_RAW_DB_URL", "RAW_DB_USER"), ("MLOPS_CLEAN_DB_URL", "CLEAN_DB_USER")]:
        assert names.index(user) < names.index(url), "Kubernetes expands only earlier variables"


def test_platform_settings_are_values() -> None:
    values = {
        "mlops": {
            "datasourceUrl": "https://listings.example.org/api",
            "groupNumber": 4,
            "day": "Friday",
            "dataSchedule": "*/10 * * * *",
            "extraEnv": {"MLOPS_MIN_NEW_ROWS": 300},
        },
        "extraEnv": [{"name": "AIRFLOW__CORE__PARALLELISM", "value": "8"}],
    }
    env = env_of(pod_spec(deployment(render_chart(CHART, values), "worker"))["containers"][0])
    assert env["MLOPS_DATASOURCE_URL"]["value"] == "https://listings.example.org/api"
    assert env["MLOPS_GROUP_NUMBER"]["value"] == "4"
    assert env["MLOPS_DAY"]["value"] == "Friday"
    assert env["MLOPS_DATA_SCHEDULE"]["value"] == "*/10 * * * *"
    assert env["MLOPS_MIN_NEW_ROWS"]["value"] == "300"
    assert env["AIRFLOW__CORE__PARALLELISM"]["value"] == "8"


def test_one_shared_environment_in_every_airflow_container() -> None:
    """The env helper is used by every Airflow container and by the pod template."""
    for mode, values in MODES.items():
        reference = None
        for name, spec in pods(render_chart(CHART, values)):
            for container in airflow_containers(spec):
                env = [e for e in container["env"] if not e["name"].startswith(("ADMIN_", "CONN"))]
                env = [e for e in env if e["name"] != "AIRFLOW__LOGGING__LOGGING_LEVEL"]
                reference = reference or env
                assert env == reference, f"{mode}: {name}/{container['name']} differs"


def test_every_env_airflow_option_exists_in_airflow_3_3() -> None:
    options = airflow_config_options()
    # Options of providers in the image's lock (not all installed in this test environment).
    provider_options = {
        "celery": {"broker_url", "result_backend", "worker_concurrency"},
        "kubernetes_executor": {"namespace", "pod_template_file", "delete_worker_pods"},
        "fab": {"config_file"},
    }
    seen = set()
    for values in MODES.values():
        for _, spec in pods(render_chart(CHART, values)):
            for container in airflow_containers(spec):
                for name in env_of(container):
                    match = re.fullmatch(r"AIRFLOW__([A-Z_]+?)__([A-Z_]+)", name)
                    if not match:
                        continue
                    section, option = match.group(1).lower(), match.group(2).lower()
                    known = options.get(section, set()) | provider_options.get(section, set())
                    assert option in known, f"{name}: no [{section}] {option} in Airflow 3.3"
                    seen.add(name)
    assert "AIRFLOW__API_AUTH__JWT_SECRET" in seen
    assert "AIRFLOW__CORE__EXECUTION_API_SERVER_URL" in seen


def test_hostname_callable_exists() -> None:
    """Pods are reached by IP for task logs: the callable must exist in Airflow 3.3."""
    assert airflow_facts()["host_ip_callable"] is True


def test_no_literal_secret_in_any_env() -> None:
    secret_name = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET")
    for mode, values in MODES.items():
        for name, spec in pods(render_chart(CHART, values)):
            for container in spec_containers(spec):
                for item in container.get("env", []):
                    where = f"{mode}: {name}/{container['name']} {item['name']}"
                    assert set(item) <= {"name", "value", "valueFrom"}, where
                    if "valueFrom" in item:
                        assert item["valueFrom"]["secretKeyRef"]["name"] == SECRET, where
                        continue
                    assert not secret_name.search(item["name"]), f"{where} must be a secretKeyRef"
                    for _, userinfo, _, _ in URL.findall(item["value"]):
                        if userinfo:
                            assert re.fullmatch(r"(\$\(\w+\))?:\$\(\w+\)", userinfo), where


def test_secret_references_exist_in_the_secrets_chart() -> None:
    produced = {
        s["metadata"]["name"]: set(s.get("data", {})) | set(s.get("stringData", {}))
        for s in by_kind(render_chart("secrets"), "Secret")
    }
    contract = readme_secret_keys()[SECRET]  # charts/README.md, "Secrets contract"
    assert len(contract) == 13
    assert produced[SECRET] >= contract, "the README's Secret keys"
    used = set()
    for values in MODES.values():
        for _, spec in pods(render_chart(CHART, values)):
            for container in spec_containers(spec):
                for item in container.get("env", []):
                    ref = item.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["key"] in produced[ref["name"]], ref
                        used.add(ref["key"])
    assert used == contract


def test_secret_name_and_keys_are_overridable() -> None:
    values = {"auth": {"existingSecret": "my-airflow", "dbPasswordKey": "pg-pass"}}
    env = env_of(pod_spec(deployment(render_chart(CHART, values), "scheduler"))["containers"][0])
    assert env["AIRFLOW_DB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "my-airflow",
        "key": "pg-pass",
    }
    assert env["AIRFLOW__CORE__FERNET_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "my-airflow"


def test_every_host_is_a_design_service() -> None:
    for values in MODES.values():
        for name, spec in pods(render_chart(CHART, values)):
            for container in airflow_containers(spec):
                for item in container["env"]:
                    for scheme, _, host, port in URL.findall(item.get("value", "")):
                        default = {"http": 80, "https": 443}.get(scheme)
                        service = (host, int(port) if port else default)
                        assert service in KNOWN_SERVICES, f"{name} {item['name']}: {service}"


# --- git-sync -------------------------------------------------------------------------------


def test_git_sync_values_are_the_guides_block() -> None:
    values = yaml.safe_load((CHARTS_DIR / CHART / "values.yaml").read_text())["gitSync"]
    for key, expected in GUIDE_GIT_SYNC.items():
        if key == "image":
            for image_key, image_value in expected.items():
                assert values["image"][image_key] == image_value
        else:
            assert values[key] == expected, key
    assert re.fullmatch(r"v4\.\d+\.\d+", values["image"]["tag"]), "a pinned git-sync v4 tag"
    assert values["repository"] == "", "no placeholder that nobody can clone"


def test_git_sync_without_a_repository_fails_at_render_and_says_what_to_set() -> None:
    """A placeholder would leave every DAG reader in Init and the install waiting on it."""
    for values in [{"gitSync": {"repository": ""}}, {"gitSync": {"repository": "", "branch": "x"}}]:
        with pytest.raises(HelmError) as failure:
            render_chart(CHART, values)
        message = str(failure.value)
        assert "gitSync.repository is empty" in message
        assert "--set gitSync.repository=https://" in message
        assert "--set gitSync.enabled=false" in message
        assert "airflow.gitSync.repository" in message, "the umbrella's key too"
    image_dags = render_chart(CHART, {"gitSync": {"enabled": False, "repository": ""}})
    assert not [c for _, spec in pods(image_dags) for c in spec_containers(spec) if is_git_sync(c)]


def test_git_sync_refuses_an_address_it_cannot_clone_without_keys() -> None:
    for address in ["git@github.com:you/mlops-platform.git", "github.com/you/repo", "main"]:
        with pytest.raises(HelmError, match="gitSync/repository"):
            render_chart(CHART, {"gitSync": {"repository": address}})


@pytest.mark.parametrize("component", DAG_READERS)
def test_git_sync_sidecar_and_init_in_every_dag_reader(component: str) -> None:
    objects = render_chart(CHART)
    spec = pod_spec(deployment(objects, component))
    init = [c for c in spec.get("initContainers", []) if is_git_sync(c)]
    sidecars = [c for c in spec["containers"] if is_git_sync(c)]
    assert [c["name"] for c in init] == ["git-sync-init"]
    assert [c["name"] for c in sidecars] == ["git-sync"]
    values = yaml.safe_load((CHARTS_DIR / CHART / "values.yaml").read_text())["gitSync"]
    for container in [*init, *sidecars]:
        assert flag(container, "repo") == REQUIRED["gitSync"]["repository"]
        assert flag(container, "ref") == GUIDE_GIT_SYNC["branch"]
        assert flag(container, "root") == "/git"
        assert flag(container, "link") == "repo"
        assert container["image"] == f"{GIT_SYNC_IMAGE}{values['image']['tag']}"
        assert container["imagePullPolicy"] == "IfNotPresent"
        assert container["resources"] == GUIDE_GIT_SYNC["resources"]
        ctx = container["securityContext"]
        assert ctx["runAsUser"] == 65533
        assert ctx["runAsNonRoot"] is True
        assert ctx["readOnlyRootFilesystem"] is True
        assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["dags"] == "/git"
    assert "--one-time" in init[0]["args"]
    assert "--one-time" not in sidecars[0]["args"]
    assert flag(sidecars[0], "period") == "60s"
    assert sidecars[0]["livenessProbe"]["httpGet"]["port"] == "git-sync"
    assert "fsGroup" in spec["securityContext"], "Airflow reads what git-sync writes via fsGroup"
    main = spec["containers"][0]
    assert env_of(main)["AIRFLOW__CORE__DAGS_FOLDER"]["value"] == GIT_DAGS
    dags = {m["name"]: m for m in main["volumeMounts"]}["dags"]
    assert (dags["mountPath"], dags["readOnly"]) == ("/git", True)
    assert GIT_DAGS.startswith(dags["mountPath"] + "/")
    assert {v["name"]: v for v in spec["volumes"]}["dags"] == {"name": "dags", "emptyDir": {}}


def test_git_sync_follows_values() -> None:
    values = {
        "gitSync": {
            "repository": "https://example.com/team/dags.git",
            "branch": "release",
            "subPath": "airflow/dags",
            "period": "15s",
        }
    }
    scheduler = deployment(render_chart(CHART, values), "scheduler")
    spec = pod_spec(scheduler)
    sidecar = containers_by_name(scheduler)["git-sync"]
    assert flag(sidecar, "repo") == "https://example.com/team/dags.git"
    assert flag(sidecar, "ref") == "release"
    assert flag(sidecar, "period") == "15s"
    dags_folder = env_of(spec["containers"][0])["AIRFLOW__CORE__DAGS_FOLDER"]["value"]
    assert dags_folder == "/git/repo/airflow/dags"


@pytest.mark.parametrize("executor", EXECUTORS)
def test_git_sync_credentials_for_a_private_repository(executor: str) -> None:
    """Every git-sync container (sidecars, init containers, the task pod template) reads the
    login from the named Secret; a public repository (the default) needs none."""
    public = render_chart(CHART, {"executor": executor})
    for _, spec in pods(public):
        for container in spec_containers(spec):
            if is_git_sync(container):
                assert "env" not in container
    private = render_chart(
        CHART, {"executor": executor, "gitSync": {"credentialsSecret": "git-credentials"}}
    )
    seen = 0
    for name, spec in pods(private):
        for container in spec_containers(spec):
            if is_git_sync(container):
                seen += 1
                refs = {
                    item["name"]: item["valueFrom"]["secretKeyRef"] for item in container["env"]
                }
                assert refs == {
                    "GITSYNC_USERNAME": {"name": "git-credentials", "key": "username"},
                    "GITSYNC_PASSWORD": {"name": "git-credentials", "key": "password"},
                }, name
    assert seen >= 2 * len(
        [r for r in DAG_READERS if executor == "CeleryExecutor" or r != "worker"]
    )
    with pytest.raises(HelmError, match="/gitSync/credentialsSecret"):
        render_chart(CHART, {"gitSync": {"credentialsSecret": "Not A Secret"}})


def test_api_server_has_no_git_sync_and_no_dags() -> None:
    """Airflow 3's api-server serves serialized DAGs from the database: it reads no DAG file."""
    spec = pod_spec(deployment(render_chart(CHART), "api-server"))
    assert not [c for c in spec_containers(spec) if is_git_sync(c)]
    assert "dags" not in {v["name"] for v in spec["volumes"]}


@pytest.mark.parametrize("executor", EXECUTORS)
def test_git_sync_disabled_leaves_no_trace(executor: str) -> None:
    objects = render_chart(CHART, {"gitSync": {"enabled": False}, "executor": executor})
    for name, spec in pods(objects):
        assert not [c for c in spec_containers(spec) if is_git_sync(c)], name
        assert "dags" not in {v["name"] for v in spec.get("volumes", [])}, name
        for container in spec_containers(spec):
            env = env_of(container)
            assert env["AIRFLOW__CORE__DAGS_FOLDER"]["value"] == IMAGE_DAGS, name
    assert not [o for o in by_kind(objects, "ConfigMap") if "dag" in o["metadata"]["name"]]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_volume_mount_resolves_and_every_volume_is_used(mode: str) -> None:
    for name, spec in pods(render_chart(CHART, MODES[mode])):
        volumes = [v["name"] for v in spec.get("volumes", [])]
        assert len(volumes) == len(set(volumes)), f"{name}: duplicate volumes"
        mounted = set()
        for container in spec_containers(spec):
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{name}/{container['name']}: {mount['name']}"
                mounted.add(mount["name"])
        assert set(volumes) == mounted, f"{name}: unused volumes {set(volumes) - mounted}"


def test_no_configmap_of_dags() -> None:
    for values in MODES.values():
        for cm in by_kind(render_chart(CHART, values), "ConfigMap"):
            assert not any(key.endswith(".py") for key in cm.get("data", {})), cm["metadata"]


# --- migrations and the admin user ------------------------------------------------------------


def hook(obj: dict[str, Any]) -> tuple[set[str], int]:
    annotations = obj["metadata"]["annotations"]
    return set(annotations["helm.sh/hook"].split(",")), int(annotations["helm.sh/hook-weight"])


def test_migration_job_is_a_pre_hook_before_the_deployments() -> None:
    objects = render_chart(CHART)
    migrate = one(objects, "Job", "airflow-migrate")
    phases, weight = hook(migrate)
    assert phases == {"pre-install", "pre-upgrade"}
    annotations = migrate["metadata"]["annotations"]
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    assert migrate["spec"]["backoffLimit"] >= 1
    assert migrate["spec"]["activeDeadlineSeconds"] > 0
    script = pod_spec(migrate)["containers"][0]["args"][-1]
    assert script.index("airflow db migrate") < script.index("mlops db upgrade")
    assert "set -e" in script
    # A pre-install hook may use only what exists before the release: no object of this chart.
    spec = pod_spec(migrate)
    assert "serviceAccountName" not in spec
    for volume in spec["volumes"]:
        assert set(volume) == {"name", "emptyDir"}, volume
    env = env_of(spec["containers"][0])
    assert {"MLOPS_RAW_DB_URL", "MLOPS_CLEAN_DB_URL", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"} <= set(
        env
    )
    # The admin user comes after the migrations.
    user = one(objects, "Job", "airflow-create-user")
    user_phases, user_weight = hook(user)
    assert user_phases == {"post-install", "post-upgrade"}
    assert user_weight > weight
    # Pre-install: the Deployments start after the migrations, no waiting needed.
    for component in DEPLOYMENTS:
        names = containers_by_name(deployment(objects, component))
        assert "wait-for-migrations" not in names, component


def test_post_install_mode_waits_for_migrations_in_every_deployment() -> None:
    values = {"migrateJob": {"helmHook": "post-install,post-upgrade"}}
    objects = render_chart(CHART, values)
    migrate, user = (
        one(objects, "Job", "airflow-migrate"),
        one(objects, "Job", "airflow-create-user"),
    )
    assert hook(migrate)[0] == {"post-install", "post-upgrade"}
    assert hook(user)[1] > hook(migrate)[1], "the user is created after the migrations"
    flags = airflow_facts()["db_commands"]["check-migrations"]
    for component in DEPLOYMENTS:
        init = pod_spec(deployment(objects, component))["initContainers"]
        assert init[0]["name"] == "wait-for-migrations", component
        command = init[0]["args"][-1]
        assert "airflow db check-migrations --migration-wait-timeout 900" in command
        assert "--migration-wait-timeout" in flags


def test_hook_phase_is_validated() -> None:
    with pytest.raises(HelmError, match="/migrateJob/helmHook"):
        render_chart(CHART, {"migrateJob": {"helmHook": "before-install"}})


def test_create_user_job_is_idempotent_and_reads_the_secret() -> None:
    user = one(render_chart(CHART), "Job", "airflow-create-user")
    container = pod_spec(user)["containers"][0]
    script = container["args"][-1]
    assert "airflow users list" in script
    assert "airflow users create" in script
    assert script.index("user_exists") < script.index("airflow users create")
    assert 'exists: nothing to do"\n  exit 0' in script
    env = env_of(container)
    assert env["ADMIN_USERNAME"]["valueFrom"]["secretKeyRef"]["key"] == "admin-username"
    assert env["ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "admin-password"
    assert "$(" not in script
    assert "${ADMIN_PASSWORD}" in script


def test_create_user_job_can_be_disabled() -> None:
    objects = render_chart(CHART, {"createUserJob": {"enabled": False}})
    assert [j["metadata"]["name"] for j in by_kind(objects, "Job")] == ["airflow-migrate"]


# --- executors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
def test_each_executor_renders_valid_objects(executor: str) -> None:
    objects = render_chart(CHART, {"executor": executor})
    for obj in objects:
        kubernetes_validate.validate(obj, "1.30.0", strict=True)
    for name, spec in pods(objects):
        for container in airflow_containers(spec):
            assert env_of(container)["AIRFLOW__CORE__EXECUTOR"]["value"] == executor, name


def test_celery_executor_has_workers_and_a_broker() -> None:
    objects = render_chart(CHART)
    worker = deployment(objects, "worker")
    main = pod_spec(worker)["containers"][0]
    assert "airflow celery worker" in main["args"][-1]
    assert [(p["name"], p["containerPort"]) for p in main["ports"]] == [("worker-logs", 8793)]
    probe = main["livenessProbe"]["exec"]["command"][-1]
    assert "celery --app airflow.providers.celery.executors.celery_executor.app" in probe
    assert "inspect ping -d celery@$(hostname)" in probe
    for name, spec in pods(objects):
        for container in airflow_containers(spec):
            assert "AIRFLOW__CELERY__BROKER_URL" in env_of(container), name


def test_local_executor_has_no_workers_and_no_broker() -> None:
    objects = render_chart(CHART, {"executor": "LocalExecutor"})
    names = {d["metadata"]["name"] for d in by_kind(objects, "Deployment")}
    assert "airflow-worker" not in names
    for name, spec in pods(objects):
        for container in spec_containers(spec):
            env = env_of(container)
            assert not {"AIRFLOW__CELERY__BROKER_URL", "REDIS_PASSWORD"} & set(env), name
    scheduler = pod_spec(deployment(objects, "scheduler"))["containers"][0]
    assert [p["containerPort"] for p in scheduler["ports"]] == [8793], "tasks' log server"
    assert not by_kind(objects, "ServiceAccount")


def test_kubernetes_executor_pod_template_and_rbac() -> None:
    objects = render_chart(CHART, {"executor": "KubernetesExecutor"})
    assert "airflow-worker" not in {d["metadata"]["name"] for d in by_kind(objects, "Deployment")}
    template = pod_template(objects)
    for version in ("1.30.0", kubernetes_validate.latest_version()):
        kubernetes_validate.validate(template, version, strict=True)
    assert template["metadata"]["labels"]["app.kubernetes.io/name"] == "airflow"
    spec = template["spec"]
    assert [c["name"] for c in spec["containers"]] == ["base"]
    assert [c["name"] for c in spec["initContainers"]] == ["git-sync-init"]
    assert "--one-time" in spec["initContainers"][0]["args"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["restartPolicy"] == "Never"
    base = spec["containers"][0]
    assert env_of(base)["AIRFLOW__CORE__DAGS_FOLDER"]["value"] == GIT_DAGS
    assert base["securityContext"]["readOnlyRootFilesystem"] is True
    # The scheduler reads the template from the ConfigMap, at the configured path.
    scheduler = deployment(objects, "scheduler")
    main = pod_spec(scheduler)["containers"][0]
    path = env_of(main)["AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE"]["value"]
    mount = {m["name"]: m for m in main["volumeMounts"]}["pod-template"]
    assert path == f"{mount['mountPath']}/pod_template.yaml"
    volume = {v["name"]: v for v in pod_spec(scheduler)["volumes"]}["pod-template"]
    assert volume["configMap"]["name"] == "airflow-pod-template"
    assert "checksum/pod-template" in scheduler["spec"]["template"]["metadata"]["annotations"]
    assert env_of(main)["AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE"]["value"] == "mlops"
    # RBAC: only the scheduler, only what the executor does.
    account = one(objects, "ServiceAccount")
    assert pod_spec(scheduler)["serviceAccountName"] == account["metadata"]["name"]
    assert pod_spec(scheduler)["automountServiceAccountToken"] is True
    for workload in workloads(objects):
        if workload is not scheduler:
            assert pod_spec(workload)["automountServiceAccountToken"] is False
            assert "serviceAccountName" not in pod_spec(workload)
    rules = {
        resource: set(rule["verbs"])
        for rule in one(objects, "Role")["rules"]
        for resource in rule["resources"]
    }
    assert {"create", "get", "list", "watch", "delete"} <= rules["pods"]
    assert "get" in rules["pods/log"]
    assert "list" in rules["events"]
    assert not {"*", "escalate", "bind", "impersonate"} & set().union(*rules.values())
    binding = one(objects, "RoleBinding")
    assert binding["roleRef"]["name"] == one(objects, "Role")["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "mlops"}
    ]


def test_kubernetes_executor_without_git_sync_uses_the_image_dags() -> None:
    objects = render_chart(CHART, {"executor": "KubernetesExecutor", "gitSync": {"enabled": False}})
    spec = pod_template(objects)["spec"]
    assert "initContainers" not in spec
    assert env_of(spec["containers"][0])["AIRFLOW__CORE__DAGS_FOLDER"]["value"] == IMAGE_DAGS


def test_schema_rejects_a_bad_executor_and_a_typo() -> None:
    with pytest.raises(HelmError, match=r"/executor.*must be one of 'CeleryExecutor'"):
        render_chart(CHART, {"executor": "SequentialExecutor"})
    with pytest.raises(HelmError, match="additional properties 'repo' not allowed"):
        render_chart(CHART, {"gitSync": {"repo": "https://example.com/x.git"}})
    with pytest.raises(HelmError, match="additional properties 'replica' not allowed"):
        render_chart(CHART, {"scheduler": {"replica": 2}})
    with pytest.raises(HelmError, match="/mlops/day"):
        render_chart(CHART, {"mlops": {"day": "Someday"}})


# --- probes, ports, logs, hardening ---------------------------------------------------------------


def test_probes_use_airflow_3_checks() -> None:
    facts = airflow_facts()
    objects = render_chart(CHART)
    api = pod_spec(deployment(objects, "api-server"))["containers"][0]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert api[probe]["httpGet"] == {"path": "/api/v2/monitor/health", "port": "http"}
    assert "/api/v2/monitor/health" in facts["health_paths"]
    for component, job_type in [
        ("scheduler", "SchedulerJob"),
        ("triggerer", "TriggererJob"),
        ("dag-processor", "DagProcessorJob"),
    ]:
        main = pod_spec(deployment(objects, component))["containers"][0]
        for probe in ("livenessProbe", "readinessProbe"):
            command = main[probe]["exec"]["command"][-1]
            assert f"airflow jobs check --job-type {job_type} --local" in command
        assert job_type in facts["job_types"]


def test_log_server_ports_are_declared() -> None:
    objects = render_chart(CHART)
    ports = {
        component: {
            p["containerPort"]
            for p in pod_spec(deployment(objects, component))["containers"][0].get("ports", [])
        }
        for component in DEPLOYMENTS
    }
    assert ports["worker"] == {8793}
    assert ports["triggerer"] == {8794}
    assert ports["api-server"] == {8080}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_read_only_root_with_writable_logs_and_tmp(mode: str) -> None:
    for name, spec in pods(render_chart(CHART, MODES[mode])):
        assert spec["securityContext"]["runAsUser"] == 10001, name
        for container in spec_containers(spec):
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, f"{name}/{container['name']}"
            assert ctx["allowPrivilegeEscalation"] is False
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert "/tmp" in mounts, f"{name}/{container['name']}"
            if not is_git_sync(container):
                assert {"/opt/airflow/logs", "/opt/airflow/config"} <= mounts
                assert env_of(container)["AIRFLOW_CONFIG"]["value"].startswith(
                    "/opt/airflow/config/"
                )


def test_logs_are_emptydirs_or_one_claim() -> None:
    for _, spec in pods(render_chart(CHART)):
        assert {v["name"]: v for v in spec["volumes"]}["logs"] == {"name": "logs", "emptyDir": {}}
    objects = render_chart(CHART, {"persistence": {"enabled": True, "size": "3Gi"}})
    claim = one(objects, "PersistentVolumeClaim")
    assert claim["spec"]["resources"]["requests"]["storage"] == "3Gi"
    assert claim["metadata"]["labels"]["app"] == "airflow"
    for workload in by_kind(objects, "Deployment"):
        if is_exporter_object(workload):
            continue
        logs = {v["name"]: v for v in pod_spec(workload)["volumes"]}["logs"]
        assert logs["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    for job in by_kind(objects, "Job"):  # hooks may run before the claim exists
        assert {v["name"]: v for v in pod_spec(job)["volumes"]}["logs"]["emptyDir"] == {}


def test_pods_carry_the_chart_label() -> None:
    for values in MODES.values():
        objects = render_chart(CHART, values)
        for workload in workloads(objects):
            # The statsd-exporter's pods carry their own (its policy: statsd-networkpolicy.yaml).
            name = "airflow-statsd" if is_exporter_object(workload) else "airflow"
            assert pod_labels(workload)["app.kubernetes.io/name"] == name


# --- network (the NetworkPolicy: test_network_policies.py) ---------------------------------------


def test_optional_ingress_targets_the_webserver_service() -> None:
    values = {"ingress": {"enabled": True, "host": "airflow.example.com", "className": "nginx"}}
    ingress = one(render_chart(CHART, values), "Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "airflow.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "airflow-webserver", "port": {"name": "http"}}


def test_notes_say_how_to_reach_the_ui_and_what_next() -> None:
    out = helm(
        "install",
        CHART,
        str(CHARTS_DIR / CHART),
        "-n",
        "mlops",
        "--dry-run=client",
        *required_values(CHART),
    )
    notes = out.split("NOTES:", 1)[1]
    assert "kubectl port-forward svc/airflow-webserver 8080:8080 -n mlops" in notes
    assert "Next: helm install fastapi" in notes


def test_ci_files_cover_the_notable_modes() -> None:
    stems = {path.stem for path in ci_value_files(CHART)}
    assert {"local-executor", "kubernetes-executor", "gitsync-disabled", "umbrella-hooks"} <= stems
    umbrella = yaml.safe_load((CHARTS_DIR / CHART / "ci" / "umbrella-hooks.yaml").read_text())
    assert umbrella["migrateJob"]["helmHook"] == "post-install,post-upgrade"


# --- Airflow's metrics: StatsD to the statsd-exporter (metrics.*) ---------------------------------

STATSD_IMAGE = "prom/statsd-exporter:v0.28.0"
MAPPING = CHARTS_DIR / CHART / "files" / "statsd-mapping.yml"
METRICS_DOC = CHARTS_DIR.parent / "docs" / "metrics.md"
# prometheus/statsd_exporter v0.28.0, pkg/mapper/mapper.go: what its config loader accepts (a
# mapping file it refuses stops the exporter at start).
_STATSD_SEGMENT = r"[a-zA-Z_]([a-zA-Z0-9_\-])*"
_STATSD_NEXT = r"[a-zA-Z0-9_]([a-zA-Z0-9_\-])*"
_TEMPLATE = r"(\$\{?\d+\}?)"
STATSD_MATCH = re.compile(rf"^(\*|{_STATSD_SEGMENT})(\.\*|\.{_STATSD_NEXT})*$")
STATSD_NAME = re.compile(rf"^([a-zA-Z_]|{_TEMPLATE})([a-zA-Z0-9_]|{_TEMPLATE})*$")
STATSD_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]+$")
STATSD_TYPES = {"counter": "counter", "gauge": "gauge", "observer": "timer"}


def statsd_exporter(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment", "airflow-statsd")


def airflow_metrics_doc() -> dict[str, tuple[str, str]]:
    """docs/metrics.md, "Metrics of Airflow": name -> (type, labels cell)."""
    section = METRICS_DOC.read_text().split("# Metrics of Airflow", 1)[1]
    rows = re.findall(r"^\|\s*`(airflow_[a-z0-9_]+)`\s*\|\s*([a-z]+)\s*\|([^|]*)\|", section, re.M)
    assert rows, "no Airflow metric table in docs/metrics.md"
    return {name: (kind, labels) for name, kind, labels in rows}


def airflow_metric_registry() -> dict[str, str]:
    """Airflow's own list of its metrics (metrics_template.yaml of the installed Airflow, read as a
    file): every name and legacy name -> its type (counter, gauge, timer)."""
    spec = importlib.util.find_spec("airflow")
    assert spec
    assert spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations)))
    (path,) = root.glob("_shared/observability/metrics/metrics_template.yaml")
    found = {}
    for metric in yaml.safe_load(path.read_text())["metrics"]:
        for key in ("name", "legacy_name"):
            if metric.get(key, "-") != "-":
                found[metric[key]] = metric["type"]
    return found


def test_every_airflow_container_sends_statsd_to_the_exporter_service() -> None:
    """[metrics] of Airflow 3.3's config.yml, set in every Airflow container and the task pods'
    template, pointing at the exporter's Service and its UDP port."""
    options = airflow_config_options()["metrics"]
    for mode, values in MODES.items():
        objects = render_chart(CHART, values)
        service = one(objects, "Service", "airflow-statsd")
        (udp,) = [p for p in service["spec"]["ports"] if p["protocol"] == "UDP"]
        for name, spec in pods(objects):
            for container in airflow_containers(spec):
                env = env_of(container)
                where = f"{mode}: {name}/{container['name']}"
                metrics = {
                    key.removeprefix("AIRFLOW__METRICS__").lower(): env[key]["value"]
                    for key in env
                    if key.startswith("AIRFLOW__METRICS__")
                }
                assert set(metrics) <= options, where
                assert metrics == {
                    "statsd_on": "True",
                    "statsd_host": "airflow-statsd",
                    "statsd_port": str(udp["port"]),
                    "statsd_prefix": "airflow",
                    "legacy_names_on": "True",
                }, where


def test_statsd_exporter_runs_pinned_non_root_read_only_with_the_mapping() -> None:
    objects = render_chart(CHART)
    exporter = statsd_exporter(objects)
    assert is_exporter_object(exporter)
    assert exporter["spec"]["replicas"] == 1
    spec = pod_spec(exporter)
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 65534
    (container,) = spec["containers"]
    assert container["image"] == STATSD_IMAGE
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert flag(container, "statsd.listen-udp") == ":9125"
    assert flag(container, "statsd.listen-tcp") == "", "Airflow sends UDP only"
    assert flag(container, "web.listen-address") == ":9102"
    config = flag(container, "statsd.mapping-config")
    assert config
    ports = {(p["name"], p["containerPort"], p["protocol"]) for p in container["ports"]}
    assert ports == {("statsd", 9125, "UDP"), ("metrics", 9102, "TCP")}
    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "metrics"}
    requests = container["resources"]["requests"]
    assert (requests["cpu"], requests["memory"]) == ("10m", "32Mi"), "tiny: the 7 GiB budget"
    (mount,) = container["volumeMounts"]
    assert config.startswith(mount["mountPath"] + "/")
    volume = {v["name"]: v for v in spec["volumes"]}[mount["name"]]
    configmap = one(objects, "ConfigMap", volume["configMap"]["name"])
    key = config.rsplit("/", 1)[1]
    assert yaml.safe_load(configmap["data"][key]) == yaml.safe_load(MAPPING.read_text())
    assert exporter["spec"]["template"]["metadata"]["annotations"]["checksum/mapping"]
    service = one(objects, "Service", "airflow-statsd")
    assert service["spec"]["selector"].items() <= pod_labels(exporter).items()
    assert [(p["port"], p["targetPort"], p["protocol"]) for p in service["spec"]["ports"]] == [
        (9102, "metrics", "TCP"),
        (9125, "statsd", "UDP"),
    ]
    for other in workloads(objects):  # the Service reaches the exporter only
        if other is not exporter:
            assert not service["spec"]["selector"].items() <= pod_labels(other).items()


def test_metrics_disabled_leaves_no_trace() -> None:
    objects = render_chart(CHART, {"metrics": {"enabled": False}})
    assert not [o for o in objects if "statsd" in o["metadata"]["name"]]
    for name, spec in pods(objects):
        for container in airflow_containers(spec):
            assert not [k for k in env_of(container) if k.startswith("AIRFLOW__METRICS__")], name
    ingress = one(objects, "NetworkPolicy")["spec"]["ingress"]
    ports = {p["port"] for rule in ingress for p in rule["ports"]}
    assert not ports & {9102, 9125}


def test_exporter_pods_are_their_own_and_the_airflow_policy_admits_nothing_of_them() -> None:
    """The exporter's pods are app.kubernetes.io/name airflow-statsd: no Airflow Deployment's
    selector nor the Airflow policy takes them, its selector takes no Airflow pod, and the Airflow
    policy admits neither of its ports (other charts admit Airflow by name, not the exporter)."""
    objects = render_chart(CHART, release="mlops", values={"fullnameOverride": "airflow"})
    exporter = statsd_exporter(objects)
    own = {"app.kubernetes.io/name": "airflow-statsd", "app.kubernetes.io/instance": "mlops"}
    assert exporter["spec"]["selector"]["matchLabels"] == own
    assert own.items() <= pod_labels(exporter).items()
    for other in workloads(objects):
        if other is exporter:
            continue
        assert not own.items() <= pod_labels(other).items(), other["metadata"]["name"]
        if other["kind"] == "Deployment":
            selector = other["spec"]["selector"]["matchLabels"]
            assert not selector.items() <= pod_labels(exporter).items(), other["metadata"]["name"]
    main = one(objects, "NetworkPolicy", "airflow")
    assert not main["spec"]["podSelector"]["matchLabels"].items() <= pod_labels(exporter).items()
    ports = {p["port"] for rule in main["spec"]["ingress"] for p in rule["ports"]}
    assert not ports & {9102, 9125}
    assert one(objects, "NetworkPolicy", "airflow-statsd")["spec"]["podSelector"] == {
        "matchLabels": own
    }


def test_policy_admits_statsd_from_this_release_and_scrapes_from_prometheus_only() -> None:
    objects = render_chart(CHART, release="mlops", values={"fullnameOverride": "airflow"})
    rules = one(objects, "NetworkPolicy", "airflow-statsd")["spec"]["ingress"]
    by_port = {(p["port"], p["protocol"]): rule["from"] for rule in rules for p in rule["ports"]}
    assert set(by_port) == {(9125, "UDP"), (9102, "TCP")}
    assert by_port[(9125, "UDP")] == [
        {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "airflow",
                    "app.kubernetes.io/instance": "mlops",
                }
            }
        }
    ]
    assert by_port[(9102, "TCP")] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    ]
    nobody = render_chart(CHART, {"metrics": {"networkPolicy": {"allowedClients": []}}})
    rules = one(nobody, "NetworkPolicy", "airflow-statsd")["spec"]["ingress"]
    assert [p["port"] for r in rules for p in r["ports"]] == [9125]
    off = render_chart(CHART, {"networkPolicy": {"enabled": False}})
    assert by_kind(off, "NetworkPolicy") == []


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"metrics": {"image": {"tag": "latest"}}}, "/metrics/image/tag"),
        ({"metrics": {"statsdPort": 0}}, "/metrics/statsdPort"),
        ({"metrics": {"port": "9102"}}, "/metrics/port"),
        ({"metrics": {"networkPolicy": {"allowedClients": ["Not A Label"]}}}, "allowedClients"),
        ({"metrics": {"mapping": "x"}}, "metrics"),
    ],
    ids=["latest", "port-0", "port-string", "bad-client", "unknown-key"],
)
def test_schema_rejects_bad_metrics_values(values: dict[str, Any], where: str) -> None:
    with pytest.raises(HelmError, match=where):
        render_chart(CHART, values)


def test_mapping_is_valid_for_statsd_exporter_and_maps_airflows_own_names() -> None:
    """Each mapping passes statsd_exporter v0.28's config checks and matches a name Airflow's
    metric registry lists (legacy names with their variables as `*`), of the same type; the last
    one drops the rest."""
    config = yaml.safe_load(MAPPING.read_text())
    assert config["defaults"]["observer_type"] == "histogram"
    *mappings, last = config["mappings"]
    assert last == {"match": ".", "match_type": "regex", "action": "drop", "name": "dropped"}
    registry = airflow_metric_registry()
    patterns = {re.sub(r"\{[a-z_]+\}", "*", name): kind for name, kind in registry.items()}
    for mapping in mappings:
        match = mapping["match"]
        assert STATSD_MATCH.match(match), match
        assert STATSD_NAME.match(mapping["name"]), mapping["name"]
        assert all(STATSD_LABEL.match(label) for label in mapping.get("labels", {})), match
        assert match.startswith("airflow."), "statsd_prefix airflow"
        pattern = match.removeprefix("airflow.").split(".")
        # Registry names it covers: a `*` of the mapping stands for a variable of the name or for
        # a word (dagrun.duration.<success|failed>.<dag_id>).
        covered = {
            kind
            for name, kind in patterns.items()
            if len(name.split(".")) == len(pattern)
            and all(
                m in ("*", r) and not (r == "*" and m != "*")
                for m, r in zip(pattern, name.split("."), strict=True)
            )
        }
        version = airflow_facts()["version"]
        assert covered, f"{match}: not a metric of Airflow {version}"
        assert covered == {STATSD_TYPES[mapping["match_metric_type"]]}, match
        captures = {int(v.strip("${}")) for v in mapping.get("labels", {}).values()}
        assert captures == set(range(1, match.count("*") + 1)), f"{match}: every * is a label"


def test_mapping_produces_exactly_the_documented_metrics() -> None:
    """docs/metrics.md lists every name the mapping produces, with its type and labels (the alert
    rules and the Pipelines dashboard are checked against that list by test_promql.py)."""
    documented = airflow_metrics_doc()
    mappings = yaml.safe_load(MAPPING.read_text())["mappings"][:-1]
    produced = {m["name"]: m for m in mappings}
    assert len(produced) == len(mappings), "one mapping per name"
    assert set(produced) == set(documented)
    for name, mapping in produced.items():
        kind, labels = documented[name]
        expected = {
            "observer": "histogram",
            "counter": "counter",
            "gauge": "gauge",
        }[mapping["match_metric_type"]]
        assert kind == expected, name
        assert set(re.findall(r"`([a-z_]+)`", labels.split("(")[0])) <= set(
            mapping.get("labels", {})
        ), name
        for label in mapping.get("labels", {}):
            assert f"`{label}`" in labels, f"{name}: label {label} not documented"
        assert name.endswith("_total") == (kind == "counter"), name
        assert name.endswith("_seconds") == (kind == "histogram" or "time" in name), name


# What Airflow's code sends: the calls of Airflow 3.3's scheduler, dag-processor, triggerer,
# executor and task runner (same names, same tags), through its own StatsD backend, to a UDP socket.
_EMIT = """
import json, os, socket, sys, time
from datetime import timedelta
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
sock.settimeout(1)
os.environ["AIRFLOW__METRICS__STATSD_PORT"] = str(sock.getsockname()[1])
from airflow.configuration import conf
from airflow.observability import stats
from airflow.observability.metrics import stats_utils
stats.initialize(
    factory=stats_utils.get_stats_factory(),
    export_legacy_names=conf.getboolean("metrics", "legacy_names_on"),
)
ti = {"dag_id": "data_pipeline", "task_id": "group.collect_batch"}
stats.incr("ti.start", tags=ti)
stats.incr("ti.finish", tags={**ti, "state": "failed"})
stats.timing("task.duration", 1500.0, tags=ti)
run = {"dag_id": "modeling_pipeline", "run_type": "scheduled"}
stats.timing("dagrun.duration.failed", timedelta(seconds=12), tags=run)
stats.timing("dagrun.schedule_delay", timedelta(seconds=2), tags=run)
for job in ("scheduler", "dag_processor", "triggerer"):
    stats.incr(f"{job}_heartbeat", 1, 1)
stats.gauge("scheduler.dagruns.running", 2)
stats.gauge("scheduler.tasks.starving", 0)
for name in ("open_slots", "queued_tasks", "running_tasks"):
    stats.gauge(f"executor.{name}", 3, tags={"executor_class_name": "CeleryExecutor"})
for name in ("open_slots", "queued_slots", "running_slots"):
    stats.gauge(f"pool.{name}", 5, tags={"pool_name": "default_pool"})
stats.gauge("dag_processing.import_errors", 1)
stats.gauge("dag_processing.total_parse_time", 4.2)
stats.gauge("dagbag_size", 3)
lines = []
try:
    while True:
        lines += sock.recvfrom(65535)[0].decode().split("\\n")
except socket.timeout:
    pass
print("LINES" + json.dumps([line for line in lines if line]))
"""


def map_statsd_line(line: str, mappings: list[dict[str, Any]]) -> tuple[str, dict[str, str]] | None:
    """statsd_exporter's mapping of one StatsD line, glob rules in order (None: dropped)."""
    name, rest = line.split(":", 1)
    kind = {"c": "counter", "g": "gauge", "ms": "observer"}[rest.split("|")[1]]
    for mapping in mappings:
        if mapping.get("action") == "drop":
            return None
        pattern, parts = mapping["match"].split("."), name.split(".")
        if mapping["match_metric_type"] != kind or len(pattern) != len(parts):
            continue
        if all(p in ("*", n) for p, n in zip(pattern, parts, strict=True)):
            captured = [n for p, n in zip(pattern, parts, strict=True) if p == "*"]
            labels = {
                k: captured[int(v.strip("${}")) - 1] for k, v in mapping.get("labels", {}).items()
            }
            return mapping["name"], labels
    return None


def test_what_airflow_sends_maps_to_every_documented_metric() -> None:
    """Airflow's own StatsD lines (legacy names on, as the chart sets) become the documented
    metrics with their labels; the unlabelled duplicates Airflow also sends are dropped."""
    env = {
        **os.environ,
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        "AIRFLOW__METRICS__LEGACY_NAMES_ON": "True",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    if importlib.util.find_spec("statsd") is None:
        pytest.fail("the statsd client is missing: make install (requirements.lock pins it)")
    with tempfile.TemporaryDirectory() as home:
        result = subprocess.run(
            [sys.executable, "-c", _EMIT],
            capture_output=True,
            text=True,
            env={**env, "AIRFLOW_HOME": home},
            check=False,
            timeout=120,
        )
    line = next((x for x in result.stdout.splitlines() if x.startswith("LINES")), None)
    assert line, result.stderr[-3000:]
    mappings = yaml.safe_load(MAPPING.read_text())["mappings"]
    mapped, dropped = {}, set()
    for statsd_line in json.loads(line.removeprefix("LINES")):
        found = map_statsd_line(statsd_line, mappings)
        if found:
            mapped[found[0]] = found[1]
        else:
            dropped.add(statsd_line.split(":")[0].removeprefix("airflow."))
    assert set(mapped) == set(airflow_metrics_doc())
    # Dropped: the same metrics under their new, unlabelled names (plain StatsD has no tags).
    assert {"ti.finish", "dagrun.duration.failed", "executor.queued_tasks"} <= dropped
    assert dropped <= set(airflow_metric_registry()) | {"dagrun.duration.failed"}
    # A dot in a task id (a task group) arrives as `__`.
    task = {"dag_id": "data_pipeline", "task_id": "group__collect_batch"}
    assert mapped["airflow_ti_finish_total"] == {**task, "state": "failed"}
    assert mapped["airflow_task_duration_seconds"] == task
    assert mapped["airflow_dagrun_duration_seconds"] == {
        "dag_id": "modeling_pipeline",
        "state": "failed",
    }
    assert mapped["airflow_executor_queued_tasks"] == {"executor": "CeleryExecutor"}
    assert mapped["airflow_pool_open_slots"] == {"pool": "default_pool"}


# --- helm test (templates/tests/test-connection.yaml) --------------------------------------------
# The command the pod runs. The pod itself, its NetworkPolicy rule, its `tests` values and that the
# URL is the Service's name and port (also in the umbrella's case): test_helm_test_pods.py.


@pytest.mark.parametrize(
    ("values", "release", "service"),
    [
        ({}, CHART, "airflow-webserver:8080"),
        (
            {"fullnameOverride": "orchestrator", "service": {"port": 18080}},
            "mlops",
            "orchestrator-webserver:18080",
        ),
    ],
    ids=["guide", "umbrella"],
)
def test_helm_test_gets_the_api_server_health_through_the_webserver_service(
    values: dict[str, Any], release: str, service: str
) -> None:
    """GET of the api-server's Service (<fullname>-webserver: airflow-webserver in the guide and
    the umbrella) at the probes' path, as the workers call its execution API."""
    command = helm_test_command(render_chart(CHART, values, release=release))
    assert command == ["mlops", "check", "http", f"http://{service}/api/v2/monitor/health"]
