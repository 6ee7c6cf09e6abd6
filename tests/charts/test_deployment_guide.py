"""The deployment guide (docs/deployment.md and its Spanish twin) and the make targets running it.

No cluster here, so the guide is checked against what can be proven: the `make` targets print
(`make -n`) and run (with recording stand-ins for helm/kubectl/minikube) exactly the commands of
the guide's blocks marked `<!-- make TARGET -->`; every chart path exists; every `helm
install/upgrade` line of both guides renders with its flags; every Service, port, workload,
container, Secret key, DAG id and image the guide names is one the charts render or the repository
holds; the package order is the guide's; and the Spanish guide has the same commands and sections.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.conftest import (
    CHARTS_DIR,
    COMPONENTS,
    PACKAGE_1,
    PACKAGE_2,
    PACKAGE_3,
    REPO,
    UMBRELLA,
    all_containers,
    by_kind,
    ensure_dependencies,
    env_of,
    helm,
    render_chart,
    required_values,
)

GUIDE = REPO / "docs" / "deployment.md"
GUIDE_ES = REPO / "docs" / "deployment.es.md"
GUIDES = [GUIDE, GUIDE_ES]
# The commands compared between the guide and the make targets; git only checks (git ls-remote).
TOOLS = {"helm", "kubectl", "minikube", "git"}
# What the recording stand-ins replace (git is the real one, against a local repository).
STAND_INS = {"helm", "kubectl", "minikube"}
# The guide's shell variables (GIT_REPO=$(git remote get-url origin)...) -> the value the tests
# give them: the Makefile takes them from the checkout in the same way.
SHELL_VALUES = {
    "GIT_REPO": "https://github.com/mlops-platform/mlops-platform.git",
    "GIT_BRANCH": "main",
}
ASSIGNMENT = re.compile(r"^([A-Z_]+)=\$\((.*)\)$")
TARGETS = ["k8s-images", "k8s-install", "k8s-upgrade", "k8s-test", "k8s-reset", "port-forward"]
# Arguments that make every target non-interactive and independent of the caller's environment.
MAKE_VARS = {"HELM": "helm", "KUBECTL": "kubectl", "MINIKUBE": "minikube", "CONFIRM": "yes"}
# The seed guide's port-forwards (service, port), plus Prometheus.
PORT_FORWARDS = [
    ("airflow-webserver", 8080),
    ("mlflow", 5000),
    ("minio", 9001),
    ("fastapi", 8989),
    ("streamlit", 8501),
    ("grafana", 3000),
    ("prometheus", 9090),
]
MARKER = re.compile(r"<!--\s*make\s+([\w-]+)\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")
SEPARATORS = {"&&", "||", ";", ";;", "&", "|", "(", ")"}
REDIRECTIONS = {">", ">>", "<", ">&", "&>", "<&", ">|"}
# What a port-forward stand-in runs (its command line, NUL-separated as in /proc/PID/cmdline).
FORWARD_STAND_IN = b"sleep\x00120"
WORKLOAD_KIND = {"deploy": "Deployment", "deployment": "Deployment", "statefulset": "StatefulSet"}


# ---------------------------------------------------------------------------------------------
# Parsing: Markdown bash blocks and shell lines -> commands (token tuples)


def bash_blocks(path: Path) -> list[tuple[str | None, str]]:
    """Every ```bash block of ``path``: (make target of the marker just above it or None, text)."""
    blocks: list[tuple[str | None, str]] = []
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if fence and fence.group(1) == "bash":
            previous = next((line for line in reversed(lines[:index]) if line.strip()), "")
            marker = MARKER.fullmatch(previous.strip())
            end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
            blocks.append((marker.group(1) if marker else None, "\n".join(lines[index + 1 : end])))
            index = end
        index += 1
    return blocks


def logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined and comment-only/blank lines dropped."""
    joined = re.sub(r"\\\n", " ", text)
    return [
        line.strip()
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def tokens(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def commands(line: str) -> list[tuple[str, ...]]:
    """The helm/kubectl/minikube commands of one shell line, redirections removed.

    ``a >/dev/null 2>&1 || b & c; echo "x"`` gives ``[a, b, c]`` when a, b and c start with one
    of the three tools; a tool given by path (``.tools/bin/helm``) counts by its name.
    """
    found: list[tuple[str, ...]] = []
    segment: list[str] = []
    words = iter(tokens(line))
    for word in words:
        if word in SEPARATORS:
            found.append(tuple(segment))
            segment = []
        elif word in REDIRECTIONS:
            next(words, None)  # the redirection's target
            if segment and segment[-1].isdigit():
                segment.pop()  # the file descriptor of `2>&1`
        else:
            segment.append(word)
    found.append(tuple(segment))
    result = []
    for command in found:
        if command and Path(command[0]).name in TOOLS:
            result.append((Path(command[0]).name, *command[1:]))
    return result


def guide_commands(path: Path, target: str | None = None) -> list[tuple[str, ...]]:
    """Commands of the guide's bash blocks (only those marked for ``target`` when given).

    A shell variable's assignment (``GIT_REPO=$(git remote get-url origin)``) is not a command:
    the Makefile sets the same variable the same way (see guide_assignments).
    """
    return [
        command
        for marked, text in bash_blocks(path)
        if target is None or marked == target
        for line in logical_lines(text)
        if not ASSIGNMENT.match(line)
        for command in commands(line)
    ]


def guide_assignments(path: Path) -> dict[str, str]:
    """The guide's shell variables -> the command whose output they hold."""
    found: dict[str, str] = {}
    for _, text in bash_blocks(path):
        for line in logical_lines(text):
            match = ASSIGNMENT.match(line)
            if match:
                assert found.setdefault(match.group(1), match.group(2)) == match.group(2), line
    return found


def with_values(command: tuple[str, ...], values: dict[str, str]) -> tuple[str, ...]:
    """``command`` with the guide's $VARIABLES replaced by ``values``."""
    result = []
    for word in command:
        for name, value in values.items():
            word = word.replace(f"${name}", value)
        result.append(word)
    return tuple(result)


def command_lines(path: Path) -> list[str]:
    """Every command line of every bash block, normalised (for comparing the two languages)."""
    return [" ".join(tokens(line)) for _, text in bash_blocks(path) for line in logical_lines(text)]


def make_env() -> dict[str, str]:
    """The environment without what would change the recipes (make flags, our variables)."""
    drop = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "NAMESPACE", "K8S_TIMEOUT"}
    drop |= {"HELM_TIMEOUT", "GIT_REPO", "GIT_BRANCH", "GIT_SYNC", "GIT_CREDENTIALS"}
    return {key: value for key, value in os.environ.items() if key not in drop | MAKE_VARS.keys()}


@functools.cache
def make_dry_run(target: str) -> str:
    args = [f"{key}={value}" for key, value in MAKE_VARS.items()]
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", target, *args],
        cwd=REPO,
        env=make_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, f"make -n {target} failed:\n{result.stderr}"
    return result.stdout


def make_commands(output: str) -> list[tuple[str, ...]]:
    return [command for line in logical_lines(output) for command in commands(line)]


def is_namespace_guard(command: tuple[str, ...]) -> bool:
    """`kubectl get namespace mlops` before `||`: k8s-install creates the namespace when missing."""
    return command[:3] == ("kubectl", "get", "namespace")


def flag_value(command: tuple[str, ...], *names: str) -> str | None:
    for index, word in enumerate(command):
        for name in names:
            if word == name and index + 1 < len(command):
                return command[index + 1]
            if word.startswith(name + "="):
                return word.split("=", 1)[1]
    return None


# ---------------------------------------------------------------------------------------------
# What the charts render


def chart_names() -> list[str]:
    return sorted(p.parent.name for p in CHARTS_DIR.glob("*/Chart.yaml"))


@functools.cache
def staged_objects() -> tuple[dict[str, Any], ...]:
    """Every object of the staged install: each component rendered with release = chart name."""
    missing = [chart for chart in COMPONENTS if not (CHARTS_DIR / chart / "Chart.yaml").is_file()]
    assert not missing, f"charts not written yet: {missing}"
    return tuple(obj for chart in COMPONENTS for obj in render_chart(chart))


@functools.cache
def umbrella_objects() -> tuple[dict[str, Any], ...]:
    assert (CHARTS_DIR / UMBRELLA / "Chart.yaml").is_file(), "charts/mlops not written yet"
    return tuple(render_chart(UMBRELLA, release="mlops"))


def services(objects: tuple[dict[str, Any], ...]) -> dict[str, set[int]]:
    return {
        svc["metadata"]["name"]: {port["port"] for port in svc["spec"]["ports"]}
        for svc in by_kind(list(objects), "Service")
    }


def workload_names(objects: tuple[dict[str, Any], ...]) -> set[tuple[str, str]]:
    return {
        (obj["kind"], obj["metadata"]["name"])
        for obj in objects
        if obj["kind"] in {"Deployment", "StatefulSet", "DaemonSet"}
    }


def instance_of(obj: dict[str, Any]) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/instance"]


# ---------------------------------------------------------------------------------------------
# The guide and the make targets


def test_every_make_target_has_its_marked_blocks_in_both_guides() -> None:
    for path in GUIDES:
        marked = [target for target, _ in bash_blocks(path) if target]
        assert set(marked) == set(TARGETS), f"{path.name}: marked blocks {marked}"
    english = [target for target, _ in bash_blocks(GUIDE) if target]
    spanish = [target for target, _ in bash_blocks(GUIDE_ES) if target]
    assert english == spanish, "the two guides must mark the same blocks in the same order"


@pytest.mark.parametrize("target", TARGETS)
def test_make_prints_exactly_the_guide_commands(target: str) -> None:
    printed = make_commands(make_dry_run(target))
    if target == "k8s-install":
        guards = [command for command in printed if is_namespace_guard(command)]
        assert guards == [("kubectl", "get", "namespace", "mlops")], printed
        printed = [command for command in printed if not is_namespace_guard(command)]
    assert printed == guide_commands(GUIDE, target), (
        f"`make -n {target}` and the guide's blocks marked `<!-- make {target} -->` differ"
    )


@pytest.mark.parametrize("target", TARGETS)
def test_each_target_says_what_it_does_and_is_phony(target: str) -> None:
    assert re.search(r'^echo "==> ', make_dry_run(target), re.M), f"{target} prints no heading"
    makefile = (REPO / "Makefile").read_text()
    phony = {
        word for line in re.findall(r"^\.PHONY:(.*)$", makefile, re.M) for word in line.split()
    }
    assert target in phony
    assert re.search(rf"^{re.escape(target)}:.*## \S", makefile, re.M), f"{target} has no ## help"


def test_install_and_upgrade_can_run_again_and_wait_long_enough_for_hooks() -> None:
    """`helm upgrade --install` for every release (a second run after a failure upgrades instead
    of stopping at "cannot re-use a name"), with a timeout above helm's 5 minutes for the hook
    Jobs of a first install that pulls images."""
    for target in ("k8s-install", "k8s-upgrade"):
        helm_lines = [c for c in guide_commands(GUIDE, target) if c[0] == "helm"]
        assert helm_lines
        for command in helm_lines:
            assert command[:3] == ("helm", "upgrade", "--install"), command
            assert "--timeout=15m" in command, command


def test_make_variables_change_namespace_timeout_and_tools() -> None:
    result = subprocess.run(
        [
            *("make", "-n", "--no-print-directory", "k8s-install"),
            *("NAMESPACE=staging", "K8S_TIMEOUT=3m", "HELM_TIMEOUT=20m"),
            *("HELM=/opt/helm4/helm", "KUBECTL=kc"),
        ],
        cwd=REPO,
        env=make_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert (
        "/opt/helm4/helm upgrade --install secrets ./charts/secrets -n staging --timeout=20m"
        in result.stdout
    )
    assert "kc rollout status statefulset/postgres -n staging --timeout=3m" in result.stdout
    assert " mlops" not in result.stdout.replace("namespace mlops", "")


@pytest.fixture
def recording_tools(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """helm, kubectl and minikube stand-ins that record their arguments and succeed.

    ``kubectl get namespace`` fails (the namespace does not exist yet), so the guard creates it.
    """
    log = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in STAND_INS:
        script = bin_dir / tool
        script.write_text(
            "#!/usr/bin/env bash\n"
            f'printf "%s\\n" "$(basename "$0") $*" >> {shlex.quote(str(log))}\n'
            'if [ "$1 $2" = "get namespace" ]; then exit 1; fi\n'
            'if [ "$1" = "port-forward" ]; then exec sleep 120; fi\n'
        )
        script.chmod(0o755)
    variables = {tool.upper(): str(bin_dir / tool) for tool in STAND_INS}
    return variables, log


def recorded(log: Path) -> list[tuple[str, ...]]:
    return [tuple(line.split()) for line in log.read_text().splitlines()] if log.exists() else []


def plain(command: tuple[str, ...]) -> tuple[str, ...]:
    """A guide command as the stand-in records it (arguments joined by spaces, quotes gone)."""
    return tuple(" ".join(command).split())


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return result.stdout.strip()


@pytest.fixture
def git_remote(tmp_path: Path) -> dict[str, str]:
    """A real repository with a branch `main` holding dags/: GIT_REPO and GIT_BRANCH for make."""
    work = tmp_path / "work"
    (work / "dags").mkdir(parents=True)
    (work / "dags" / "data_pipeline.py").write_text("# a DAG\n")
    git("init", "-q", "-b", "main", cwd=work)
    git("add", ".", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "dags", cwd=work)
    bare = tmp_path / "remote.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path)
    return {"GIT_REPO": f"file://{bare}", "GIT_BRANCH": "main"}


def run_make(target: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-f", str(REPO / "Makefile"), target, *args],
        cwd=cwd,
        env=make_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize(
    "target", ["k8s-images", "k8s-install", "k8s-upgrade", "k8s-test", "k8s-reset"]
)
def test_make_runs_the_guide_commands_in_order(
    target: str, recording_tools: tuple[dict[str, str], Path], git_remote: dict[str, str]
) -> None:
    variables, log = recording_tools
    args = [f"{key}={value}" for key, value in {**variables, **git_remote}.items()]
    result = run_make(target, *args, "CONFIRM=yes")
    assert result.returncode == 0, result.stderr
    calls = [call for call in recorded(log) if not is_namespace_guard(call)]
    expected = [
        plain(with_values(command, git_remote))
        for command in guide_commands(GUIDE, target)
        if command[0] in STAND_INS
    ]
    assert calls == expected


@pytest.mark.parametrize("target", ["k8s-install", "k8s-upgrade"])
def test_make_checks_the_git_sync_source_before_installing_anything(
    target: str, recording_tools: tuple[dict[str, str], Path], git_remote: dict[str, str]
) -> None:
    """Without a source git-sync can clone, the Airflow pods would wait in Init forever: the
    targets stop first, touch nothing, and say what to do."""
    variables, log = recording_tools
    tools = [f"{key}={value}" for key, value in variables.items()]
    cases = {
        "GIT_BRANCH=not-pushed": "no branch or tag 'not-pushed'",
        "GIT_REPO=file:///nonexistent/repo.git": "could not reach it",
        "GIT_REPO=": "No git-sync source",
        "GIT_BRANCH=": "No git-sync source",
    }
    for override, message in cases.items():
        source = {**git_remote, **dict([override.split("=", 1)])}
        result = run_make(target, *tools, *(f"{k}={v}" for k, v in source.items()))
        assert result.returncode != 0, override
        assert message in result.stderr, (override, result.stderr)
        assert "GIT_REPO" in result.stderr, result.stderr
        assert "GIT_BRANCH" in result.stderr, result.stderr
        assert recorded(log) == [], f"{override}: something was installed before the check"


def test_make_takes_the_git_sync_source_from_the_checkout(tmp_path: Path) -> None:
    """origin and the current branch; an SSH origin as HTTPS (git-sync has no SSH key)."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    git("init", "-q", "-b", "feature/x", cwd=checkout)
    for origin, expected in [
        ("git@github.com:you/mlops-platform.git", "https://github.com/you/mlops-platform.git"),
        ("ssh://git@gitlab.com/team/ml.git", "https://gitlab.com/team/ml.git"),
        ("https://github.com/you/fork.git", "https://github.com/you/fork.git"),
    ]:
        if git("remote", cwd=checkout):
            git("remote", "remove", "origin", cwd=checkout)
        git("remote", "add", "origin", origin, cwd=checkout)
        printed = run_make("k8s-install", "-n", cwd=checkout).stdout
        assert f"==> git-sync source: {expected} at feature/x" in printed, printed
    override = run_make("k8s-install", "-n", "GIT_REPO=https://h/r.git", cwd=checkout).stdout
    assert "git-sync source: https://h/r.git at feature/x" in override


def test_make_without_git_sync_or_with_a_private_repository() -> None:
    off = make_commands(run_make("k8s-install", "-n", "GIT_SYNC=off").stdout)
    assert not [command for command in off if command[0] == "git"], "no check without git-sync"
    (airflow,) = [command for command in off if release_of(command) == "airflow"]
    assert airflow[-2:] == ("--set", "gitSync.enabled=false")
    private = run_make("k8s-install", "-n", "GIT_CREDENTIALS=git-credentials").stdout
    (airflow,) = [c for c in make_commands(private) if release_of(c) == "airflow"]
    assert airflow[-2:] == ("--set", "gitSync.credentialsSecret=git-credentials")
    assert airflow[-6:-2] == (
        *("--set", "gitSync.repository=$GIT_REPO"),
        *("--set", "gitSync.branch=$GIT_BRANCH"),
    )


def test_the_guide_sets_git_variables_as_the_makefile_does() -> None:
    """The guide's `GIT_REPO=$(...)` lines run the commands the Makefile's defaults run."""
    makefile = (REPO / "Makefile").read_text()
    for path in GUIDES:
        assignments = guide_assignments(path)
        assert set(assignments) == {"GIT_REPO", "GIT_BRANCH"}, path.name
        for name, command in assignments.items():
            definition = re.search(rf"^{name} \?= \$\(shell (.*)\)$", makefile, re.M)
            assert definition, f"Makefile has no default for {name}"
            assert definition.group(1).startswith(command), (name, command)


@pytest.mark.parametrize("answer", ["n", "", "nope"])
def test_k8s_reset_asks_and_deletes_nothing_without_a_yes(
    answer: str, recording_tools: tuple[dict[str, str], Path]
) -> None:
    variables, log = recording_tools
    result = subprocess.run(
        ["make", "--no-print-directory", "k8s-reset", *[f"{k}={v}" for k, v in variables.items()]],
        cwd=REPO,
        env=make_env(),
        input=answer + "\n",
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Aborted: nothing deleted." in result.stdout
    assert recorded(log) == []


def test_k8s_reset_runs_after_a_yes(recording_tools: tuple[dict[str, str], Path]) -> None:
    variables, log = recording_tools
    result = subprocess.run(
        ["make", "--no-print-directory", "k8s-reset", *[f"{k}={v}" for k, v in variables.items()]],
        cwd=REPO,
        env=make_env(),
        input="y\n",
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert recorded(log) == [plain(command) for command in guide_commands(GUIDE, "k8s-reset")]


def test_port_forward_starts_every_forward_and_ctrl_c_stops_them_all(
    recording_tools: tuple[dict[str, str], Path],
) -> None:
    variables, log = recording_tools
    process = subprocess.Popen(
        ["make", "--no-print-directory", "port-forward", f"KUBECTL={variables['KUBECTL']}"],
        cwd=REPO,
        env=make_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    expected = [plain(command) for command in guide_commands(GUIDE, "port-forward")]
    try:
        deadline = time.monotonic() + 30
        while len(recorded(log)) < len(expected) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sorted(recorded(log)) == sorted(expected)
        forwards = processes_in_group(process.pid, FORWARD_STAND_IN)
        assert len(forwards) == len(expected)
        os.killpg(
            process.pid, signal.SIGINT
        )  # what Ctrl-C sends to the terminal's foreground group
        output, _ = process.communicate(timeout=30)
        for url in ("http://localhost:8080", "http://localhost:8989/docs", "http://localhost:9090"):
            assert url in output
        time.sleep(0.2)
        alive = [pid for pid in forwards if Path(f"/proc/{pid}").exists() and not zombie(pid)]
        assert alive == [], "Ctrl-C left port-forwards running"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # whatever the assertions left behind
        process.communicate(timeout=30)


def processes_in_group(group: int, command: bytes) -> list[str]:
    """Pids of process group ``group`` whose command line contains ``command`` (NUL-separated)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
        # pid (comm) state ppid pgrp ...: split after the comm, which may contain spaces
        if int(stat.rsplit(")", 1)[1].split()[2]) == group and command in cmdline:
            found.append(proc.name)
    return found


def zombie(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return False


# ---------------------------------------------------------------------------------------------
# Packages and releases


def release_of(command: tuple[str, ...]) -> str | None:
    """The release a `helm install R` or `helm upgrade [--install] R` line installs, else None."""
    if command[:2] == ("helm", "install"):
        return command[2]
    if command[:2] == ("helm", "upgrade"):
        return next(word for word in command[2:] if not word.startswith("-"))
    return None


def install_packages(path: Path) -> list[list[str]]:
    """Releases of each `k8s-install` block that installs something: the guide's packages."""
    packages = []
    for target, text in bash_blocks(path):
        if target != "k8s-install":
            continue
        releases = [
            release
            for line in logical_lines(text)
            for command in commands(line)
            if (release := release_of(command))
        ]
        if releases:
            packages.append(releases)
    return packages


def test_the_guide_installs_the_packages_in_order() -> None:
    assert install_packages(GUIDE) == [PACKAGE_1, PACKAGE_2, [*PACKAGE_3, "datasource"]]
    assert install_packages(GUIDE_ES) == install_packages(GUIDE)


def test_upgrade_and_reset_follow_the_release_list() -> None:
    releases = [release for package in install_packages(GUIDE) for release in package]
    upgraded = [r for c in guide_commands(GUIDE, "k8s-upgrade") if (r := release_of(c))]
    assert upgraded == releases
    uninstall = [c for c in guide_commands(GUIDE, "k8s-reset") if c[:2] == ("helm", "uninstall")]
    assert len(uninstall) == 1
    names = [word for word in uninstall[0][2:] if not word.startswith("-") and word != "mlops"]
    assert sorted(names) == sorted(releases), "the full reset must uninstall every release"
    assert "mlops" in uninstall[0], "the umbrella release too"
    assert "--ignore-not-found" in uninstall[0], "a release not installed must not stop the reset"


def test_every_chart_is_installed_by_the_guide_and_in_the_umbrella() -> None:
    releases = {release for package in install_packages(GUIDE) for release in package}
    assert releases == set(COMPONENTS)
    assert set(chart_names()) - {UMBRELLA} <= releases, "a chart the guide does not install"
    meta = yaml.safe_load((CHARTS_DIR / UMBRELLA / "Chart.yaml").read_text())
    assert {dep["name"] for dep in meta["dependencies"]} == releases


def test_every_chart_path_of_both_guides_exists() -> None:
    for path in GUIDES:
        for chart in sorted(set(re.findall(r"\./charts/([\w-]+)", path.read_text()))):
            assert (CHARTS_DIR / chart / "Chart.yaml").is_file(), f"{path.name}: ./charts/{chart}"


def helm_template_args(command: tuple[str, ...]) -> list[str]:
    """`helm install|upgrade ...` as the `helm template` call that renders the same thing.

    The guide's $GIT_REPO and $GIT_BRANCH take SHELL_VALUES; a plain `helm upgrade` (no
    --install) keeps the values the release was installed with, so it starts from the chart's
    required values as that install did.
    """
    positional: list[str] = []
    values: list[str] = []
    command = with_values(command, SHELL_VALUES)
    words = iter(command[2:])
    for word in words:
        if word in {"-n", "--namespace"}:
            assert next(words) == "mlops", command
        elif word in {"--set", "--set-string", "--set-json", "-f", "--values"}:
            value = next(words)
            values += [word, str(REPO / value) if word in {"-f", "--values"} else value]
        elif word.startswith(("--set=", "--set-string=", "--set-json=")):
            values.append(word)
        elif word in {"--install", "--create-namespace", "--reuse-values"} or word.startswith(
            "--timeout="
        ):
            continue
        else:
            assert not word.startswith("-"), f"flag the test does not know: {word} in {command}"
            positional.append(word)
    release, chart = positional
    assert chart.startswith("./charts/"), command
    assert "$" not in " ".join(values), f"a shell variable the test does not know: {command}"
    if command[1] == "upgrade" and "--install" not in command:
        values = [*required_values(Path(chart).name), *values]
    return ["template", release, str(REPO / chart), "-n", "mlops", *values]


def test_every_helm_install_and_upgrade_line_renders() -> None:
    """Each line of both guides, with its own --set flags (the schemas reject a misspelt key)."""
    lines = {
        command
        for path in GUIDES
        for command in guide_commands(path)
        if command[:2] in {("helm", "install"), ("helm", "upgrade")}
    }
    assert lines
    for command in sorted(lines):
        args = helm_template_args(command)
        ensure_dependencies(Path(args[2]).name)
        assert helm(*args).strip(), command


def test_the_umbrella_is_built_before_it_is_installed() -> None:
    english = guide_commands(GUIDE)
    build = english.index(("helm", "dependency", "build", f"./charts/{UMBRELLA}"))
    install = next(i for i, c in enumerate(english) if release_of(c) == UMBRELLA)
    assert build < install


# ---------------------------------------------------------------------------------------------
# Names the guide uses are names the charts render


def test_port_forwards_are_the_seed_list_and_rendered_services() -> None:
    forwards = []
    for command in guide_commands(GUIDE, "port-forward"):
        assert command[:2] == ("kubectl", "port-forward"), command
        service = command[2].removeprefix("svc/")
        local, remote = (int(port) for port in command[3].split(":"))
        assert local == remote
        forwards.append((service, remote))
    assert forwards == PORT_FORWARDS
    for objects, install in ((staged_objects(), "staged"), (umbrella_objects(), "umbrella")):
        rendered = services(objects)
        for service, port in forwards:
            assert port in rendered.get(service, set()), f"{install}: no Service {service}:{port}"


def rollout_targets(text: str) -> set[tuple[str, str]]:
    targets = set()
    for line in logical_lines(text):
        for command in commands(line):
            if command[:3] == ("kubectl", "rollout", "status"):
                kind, name = command[3].split("/")
                targets.add((WORKLOAD_KIND[kind], name))
    return targets


def test_each_package_check_waits_for_every_workload_of_the_package() -> None:
    blocks = [text for target, text in bash_blocks(GUIDE) if target == "k8s-install"]
    package_blocks = [text for text in blocks if "helm upgrade --install" in text]
    objects = staged_objects()
    for package, text in zip(install_packages(GUIDE), package_blocks, strict=True):
        rendered = {
            (kind, name)
            for kind, name in workload_names(objects)
            if any(
                obj["metadata"]["name"] == name and instance_of(obj) in package
                for obj in by_kind(list(objects), kind)
            )
        }
        assert rollout_targets(text) == rendered, f"package {package}"
    upgrade = "\n".join(text for target, text in bash_blocks(GUIDE) if target == "k8s-upgrade")
    assert rollout_targets(upgrade) == rollout_targets("\n".join(package_blocks))


def test_another_data_source_replaces_the_simulator_through_the_airflow_value() -> None:
    """The guide: skip `datasource` and set `mlops.datasourceUrl` on the airflow chart."""
    for path in GUIDES:
        assert "--set mlops.datasourceUrl=https://your-source.example.com" in path.read_text()
    url = "https://your-source.example.com"
    for chart, values in (("airflow", {"mlops": {"datasourceUrl": url}}), ("airflow", None)):
        envs = [
            env_of(container)["MLOPS_DATASOURCE_URL"]["value"]
            for obj in render_chart(chart, values)
            if obj["kind"] in {"Deployment", "Job"}
            for container in all_containers(obj)
            if "MLOPS_DATASOURCE_URL" in env_of(container)
        ]
        assert envs
        assert set(envs) == {url if values else "http://datasource:80"}


@pytest.mark.parametrize(
    ("values", "expected"), [({}, "False"), ({"dags": {"pausedAtCreation": True}}, "True")]
)
def test_dags_start_unpaused_unless_the_value_says_so(
    values: dict[str, Any], expected: str
) -> None:
    """A fresh install runs by itself (no one has to unpause the DAGs), as the guide says; the
    value keeps Airflow's default, paused, and the guide says how to unpause then."""
    for path in GUIDES:
        text = path.read_text()
        assert "dags.pausedAtCreation" in text
        assert "airflow dags unpause" in text
    seen = 0
    for obj in render_chart("airflow", values):
        if obj["kind"] in {"Deployment", "Job"}:
            for container in all_containers(obj):
                if container["image"].startswith("mlops/"):
                    setting = env_of(container)["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"]
                    assert setting["value"] == expected, (
                        obj["metadata"]["name"],
                        container["name"],
                    )
                    seen += 1
    assert seen


def test_the_umbrella_renders_the_same_workloads() -> None:
    assert workload_names(umbrella_objects()) == workload_names(staged_objects())


def test_exec_and_logs_name_rendered_workloads_and_containers() -> None:
    # `deploy/NAME` as kubectl reads it, not a folder path such as deploy/argocd/.
    pattern = re.compile(r"(deploy|deployment|statefulset)/([\w-]+)(?![\w/-])(?: -c ([\w-]+))?")
    objects = list(staged_objects())
    seen = 0
    for path in GUIDES:
        for match in pattern.finditer(path.read_text()):
            kind, name, container = WORKLOAD_KIND[match.group(1)], match.group(2), match.group(3)
            found = [obj for obj in by_kind(objects, kind) if obj["metadata"]["name"] == name]
            assert found, f"{path.name}: no {kind} {name}"
            if container:
                names = {c["name"] for c in all_containers(found[0])}
                assert container in names, f"{path.name}: {name} has no container {container}"
            seen += 1
    assert seen


def test_dag_ids_of_the_guide_are_the_dags_of_the_repository() -> None:
    dag_ids = set()
    for path in (REPO / "dags").glob("*.py"):
        dag_ids |= set(re.findall(r'dag_id="([\w.-]+)"', path.read_text()))
    assert dag_ids
    for path in GUIDES:
        used = {
            command[command.index("dags") + 2]
            for command in guide_commands(path)
            if "airflow" in command and "dags" in command
        }
        assert used, path.name
        assert used <= dag_ids, f"{path.name} runs a DAG the repository does not have: {used}"
        named = set(re.findall(r"`(\w+_pipeline)`", path.read_text()))
        assert named == dag_ids, f"{path.name} describes {named}"


def test_credentials_read_are_rendered_secret_keys() -> None:
    rendered = {
        secret["metadata"]["name"]: set(secret.get("data", {}))
        for secret in by_kind(render_chart("secrets"), "Secret")
    }
    for path in GUIDES:
        reads = [c for c in guide_commands(path) if c[:3] == ("kubectl", "get", "secret")]
        assert len(reads) == 6
        for command in reads:
            key = re.fullmatch(r"\{\.data\.([\w-]+)\}", flag_value(command, "-o").split("=", 1)[1])
            assert key, command
            assert key.group(1) in rendered.get(command[3], set()), command


def test_images_built_are_the_images_the_charts_run() -> None:
    built = {}
    for command in guide_commands(GUIDE, "k8s-images"):
        assert command[:3] == ("minikube", "image", "build"), command
        assert command[-1] == ".", "built from the repository root"
        dockerfile = flag_value(command, "-f")
        assert (REPO / dockerfile).is_file(), f"{dockerfile} does not exist"
        built[flag_value(command, "-t")] = dockerfile
    used = {
        container["image"]
        for obj in staged_objects()
        if obj["kind"] in {"Deployment", "StatefulSet", "Job", "CronJob"}
        for container in all_containers(obj)
        if container["image"].startswith("mlops/")
    }
    assert set(built) == used


def test_pvc_selectors_name_releases() -> None:
    releases = set(COMPONENTS)
    for command in guide_commands(GUIDE):
        if command[:3] == ("kubectl", "delete", "pvc") and "-l" in command:
            selector = flag_value(command, "-l")
            match = re.fullmatch(r"app in \(([\w,-]+)\)", selector or "")
            assert match, command
            assert set(match.group(1).split(",")) <= releases


# ---------------------------------------------------------------------------------------------
# The Spanish guide and the README


def headings(path: Path) -> list[tuple[int, str]]:
    """(level, number) of every ##/### heading: the numbers of the numbered steps."""
    found = []
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        match = None if in_code else re.match(r"^(#{2,3}) (\d*)", line)
        if match:
            found.append((len(match.group(1)), match.group(2)))
    return found


def test_the_spanish_guide_has_the_same_commands_and_sections() -> None:
    assert command_lines(GUIDE_ES) == command_lines(GUIDE)
    assert len(bash_blocks(GUIDE_ES)) == len(bash_blocks(GUIDE))
    assert headings(GUIDE_ES) == headings(GUIDE)
    assert len(re.findall(r"^\|", GUIDE_ES.read_text(), re.M)) == len(
        re.findall(r"^\|", GUIDE.read_text(), re.M)
    ), "the same tables, row for row"


def test_the_guides_link_each_other_and_the_readme_links_the_guide() -> None:
    assert "docs/deployment.es.md" in GUIDE.read_text()
    assert "docs/deployment.md" in GUIDE_ES.read_text()
    readme = (REPO / "README.md").read_text()
    assert "docs/deployment.md" in readme
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in logical_lines(first_block)][:2] == [
        "make up",
        "make test",
    ]


def test_k8s_test_runs_the_helm_test_of_every_chart_with_a_server() -> None:
    """Every chart that renders a Service has a test pod (templates/tests/), and `make
    k8s-test` (the guide's block) runs `helm test` on each, in the install order."""
    with_service = [c for c in COMPONENTS if by_kind(render_chart(c), "Service")]
    with_tests = [c for c in COMPONENTS if (CHARTS_DIR / c / "templates" / "tests").is_dir()]
    assert with_tests == with_service
    for chart in with_tests:
        pods = [o for o in render_chart(chart) if o["kind"] == "Pod"]
        assert [p["metadata"]["annotations"]["helm.sh/hook"] for p in pods] == ["test"], chart
    tested = [c[2] for c in guide_commands(GUIDE, "k8s-test") if c[:2] == ("helm", "test")]
    order = [release_of(c) for c in guide_commands(GUIDE, "k8s-install") if release_of(c)]
    assert tested == [release for release in order if release in with_tests]
    for command in guide_commands(GUIDE, "k8s-test"):
        assert "--logs" in command, "the test pods' logs say what each one checked"


def test_both_guides_say_where_and_why_they_depart_from_the_original() -> None:
    seed_repository = "https://github.com/Serebas12/mlop_proyecto_final.git"
    for path, heading in [
        (GUIDE, "### Where this guide departs from the original one"),
        (GUIDE_ES, "### En qué se aparta esta guía de la original"),
    ]:
        section = path.read_text().split(heading, 1)[1].split("\n## ", 1)[0]
        rows = [line for line in section.splitlines() if line.startswith("| ")][2:]
        assert len(rows) >= 8, path.name
        for said in (seed_repository, "v4.2.1", "v4.7.1", "apache/airflow", "mlops/platform"):
            assert said in section, f"{path.name}: {said}"
        for said in ("`helm upgrade --install ... --timeout=15m`", "`dags.pausedAtCreation`"):
            assert said in section, f"{path.name}: {said}"
        assert all(row.count(" | ") >= 2 and not row.endswith("|  |") for row in rows), rows
