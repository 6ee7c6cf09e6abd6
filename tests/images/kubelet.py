"""A kubelet stand-in: run the pods of a ``helm template`` render under podman, as a node would.

What it does the way the kubelet does: the rendered ``command``/``args`` with ``$(VAR)``
expansion, ``env``/``envFrom`` with Secret, ConfigMap and field references resolved from the same
render, the security context (user, groups, read-only root filesystem, dropped capabilities, no
privilege escalation, ``runAsNonRoot`` checked against the image), memory and CPU limits,
volumes (emptyDir and claims as host folders, Secrets and ConfigMaps as read-only files), init
containers first and in order, then the containers through their startup, liveness and
readiness probes (exec, httpGet, tcpSocket) with the kubelet's budgets and timeouts. What it
does not: scheduling, Kubernetes DNS and networking (every pod shares the host's network; Service
names resolve to 127.0.0.1 through ``--add-host``), restarts, storage classes. podman runs with
runc and cgroupfs (crun cannot set rlimits on this kind of machine).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OWNED_PREFIX = "mlops/"
LABEL = "mlops-images-test=1"
PODMAN_GLOBAL = [
    # The storage scripts/images.sh builds into (same variable, same default).
    "--storage-driver",
    os.environ.get("MLOPS_STORAGE_DRIVER", "overlay"),
    "--runtime",
    "runc",
    "--cgroup-manager",
    "cgroupfs",
    "--events-backend",
    "file",
]
# runc needs explicit limits here (the defaults exceed what the sandbox lets it set).
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
# What `podman exec` adds to an exec probe's own run (the kubelet's exec has no such cost).
EXEC_OVERHEAD_S = 1.0
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_QUANTITY = re.compile(r"^([0-9.]+)([A-Za-z]*)$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_DECIMAL = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


class PodError(RuntimeError):
    """A pod did not start, a Job failed or a container never became ready; says which and why."""


def podman_binary() -> str | None:
    return shutil.which("podman")


def podman(*args: str, check: bool = True, timeout: float = 120, **kw: Any) -> str:
    binary = podman_binary()
    if binary is None:
        raise PodError("podman is not installed: run `make images` (it installs podman)")
    result = subprocess.run(
        [binary, *PODMAN_GLOBAL, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        **kw,
    )
    if check and result.returncode != 0:
        raise PodError(f"podman {' '.join(args[:2])} failed: {result.stderr.strip()[-1500:]}")
    return result.stdout


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined names are replaced, ``$$`` escapes a ``$``,
    anything else stays as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REFERENCE.sub(replace, text)


def memory_bytes(quantity: str | int) -> int:
    number, unit = _QUANTITY.match(str(quantity)).groups()  # type: ignore[union-attr]
    return int(float(number) * (_BINARY.get(unit) or _DECIMAL[unit]))


def cpus(quantity: str | int) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


@dataclass
class Render:
    """The objects of one ``helm template`` run, looked up the way the API server would."""

    objects: list[dict[str, Any]]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for obj in self.objects:
            if obj["kind"] == kind and obj["metadata"]["name"] == name:
                return obj
        raise PodError(f"{kind} {name!r} is referenced but not in the render")

    def secret(self, name: str) -> dict[str, str]:
        obj = self.get("Secret", name)
        data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        return {**data, **(obj.get("stringData") or {})}

    def config_map(self, name: str) -> dict[str, str]:
        return dict(self.get("ConfigMap", name).get("data") or {})

    def services(self) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == "Service"]

    def workloads(self) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] in {"Deployment", "StatefulSet", "Job"}]

    def test_pods(self) -> list[dict[str, Any]]:
        """The `helm test` pods (hook `test`): run by `helm test`, not by an install."""
        return [
            o
            for o in self.objects
            if o["kind"] == "Pod"
            and (o["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"
        ]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a workload, or of a bare Pod (a `helm test` pod)."""
    return workload["spec"] if workload["kind"] == "Pod" else workload["spec"]["template"]["spec"]


def is_owned(container: dict[str, Any]) -> bool:
    return container["image"].startswith(OWNED_PREFIX)


def owned_workloads(render: Render) -> list[dict[str, Any]]:
    """Workloads with at least one container of an image we build."""
    return [
        w
        for w in render.workloads()
        if any(
            is_owned(c)
            for c in (*pod_spec(w).get("initContainers", []), *pod_spec(w)["containers"])
        )
    ]


def _lookup(source: dict[str, str], key: str, what: str, optional: bool) -> str | None:
    if key in source:
        return source[key]
    if optional:
        return None
    raise PodError(f"{what} has no key {key!r}")


def resolve_env(container: dict[str, Any], render: Render, pod_name: str) -> dict[str, str]:
    """The container's environment, in order, as the kubelet builds it."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "secretRef" in source:
            values = render.secret(source["secretRef"]["name"])
        else:
            values = render.config_map(source["configMapRef"]["name"])
        env.update({prefix + k: v for k, v in values.items()})
    fields = {
        "metadata.name": pod_name,
        "metadata.namespace": "mlops",
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
        "spec.nodeName": "node",
        "spec.serviceAccountName": "default",
    }
    for item in container.get("env", []):
        name = item["name"]
        if "value" in item:
            env[name] = expand(str(item["value"]), env)
            continue
        ref = item.get("valueFrom", {})
        value: str | None
        if "secretKeyRef" in ref:
            r = ref["secretKeyRef"]
            value = _lookup(
                render.secret(r["name"]), r["key"], f"Secret {r['name']}", r.get("optional", False)
            )
        elif "configMapKeyRef" in ref:
            r = ref["configMapKeyRef"]
            value = _lookup(
                render.config_map(r["name"]),
                r["key"],
                f"ConfigMap {r['name']}",
                r.get("optional", False),
            )
        elif "fieldRef" in ref:
            value = fields[ref["fieldRef"]["fieldPath"]]
        else:
            raise PodError(f"env {name}: unsupported valueFrom {sorted(ref)}")
        if value is not None:
            env[name] = value
    return env


def _security(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    return {**(pod.get("securityContext") or {}), **(container.get("securityContext") or {})}


@dataclass
class Pod:
    """One pod of a workload: its host folders and the podman containers it started."""

    workload: dict[str, Any]
    render: Render
    root: Path
    hosts: list[str]
    stand_ins: dict[str, Callable[[Pod, dict[str, Any]], None]] = field(default_factory=dict)
    containers: list[str] = field(default_factory=list)
    started: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.workload["metadata"]["name"]

    @property
    def spec(self) -> dict[str, Any]:
        return pod_spec(self.workload)

    def container_name(self, container: dict[str, Any]) -> str:
        return f"k8s-{self.name}-{container['name']}"

    # --- volumes ---------------------------------------------------------------------------
    def volume_dir(self, name: str) -> Path:
        return self.root / self.name / "volumes" / name

    def prepare_volumes(self) -> None:
        fs_group = (self.spec.get("securityContext") or {}).get("fsGroup")
        for volume in self.spec.get("volumes", []):
            path = self.volume_dir(volume["name"])
            if path.exists():
                continue  # kept across the pod's containers, like the kubelet's
            path.mkdir(parents=True)
            if "emptyDir" in volume:
                path.chmod(0o777)  # the kubelet's emptyDir mode
            elif "persistentVolumeClaim" in volume:
                if fs_group is not None:
                    os.chown(path, -1, fs_group)
                path.chmod(0o2775)  # fsGroup ownership management
            elif "secret" in volume or "configMap" in volume:
                self._write_files(volume, path, fs_group)
            else:
                raise PodError(f"{self.name}: volume {volume['name']} of an unsupported kind")

    def _write_files(self, volume: dict[str, Any], path: Path, fs_group: int | None) -> None:
        if "secret" in volume:
            source = volume["secret"]
            data = self.render.secret(source["secretName"])
        else:
            source = volume["configMap"]
            data = self.render.config_map(source["name"])
        mode = source.get("defaultMode", 0o644)
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            target = path / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(data[item["key"]])
            os.chown(target, 0, fs_group if fs_group is not None else 0)
            target.chmod(item.get("mode", mode))
        path.chmod(0o755)

    def _mounts(self, container: dict[str, Any]) -> list[str]:
        args: list[str] = []
        for mount in container.get("volumeMounts", []):
            source = self.volume_dir(mount["name"])
            if mount.get("subPath"):
                source = source / mount["subPath"]
            option = ":ro" if mount.get("readOnly") else ""
            args += ["--volume", f"{source}:{mount['mountPath']}{option}"]
        return args

    # --- containers ------------------------------------------------------------------------
    def run_args(self, container: dict[str, Any], env: dict[str, str]) -> list[str]:
        security = _security(self.spec, container)
        image = container["image"]
        user = security.get("runAsUser")
        if user is None:
            user = podman("image", "inspect", "--format", "{{.Config.User}}", image).strip()
        uid = str(user).split(":")[0]
        if security.get("runAsNonRoot") and uid in {"", "0", "root"}:
            raise PodError(
                f"{self.name}/{container['name']}: runAsNonRoot, but {image} runs as root"
            )
        args = ["run", "--detach", "--replace", "--name", self.container_name(container)]
        args += ["--label", LABEL, "--pull", "never", "--network", "host", *ULIMITS]
        for host in self.hosts:
            args += ["--add-host", f"{host}:127.0.0.1"]
        group = security.get("runAsGroup")
        args += ["--user", f"{user}:{group}" if group is not None else str(user)]
        pod_security = self.spec.get("securityContext") or {}
        for extra in [pod_security.get("fsGroup"), *pod_security.get("supplementalGroups", [])]:
            if extra is not None:
                args += ["--group-add", str(extra)]
        if security.get("readOnlyRootFilesystem"):
            args += ["--read-only", "--read-only-tmpfs=false"]
        capabilities = security.get("capabilities") or {}
        args += [f"--cap-drop={c.lower()}" for c in capabilities.get("drop", [])]
        args += [f"--cap-add={c.lower()}" for c in capabilities.get("add", [])]
        if security.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        limits = (container.get("resources") or {}).get("limits") or {}
        if "memory" in limits:
            args += ["--memory", str(memory_bytes(limits["memory"]))]
        if "cpu" in limits:
            args += ["--cpus", f"{cpus(limits['cpu']):g}"]
        if container.get("workingDir"):
            args += ["--workdir", container["workingDir"]]
        args += self._mounts(container)
        for name in env:
            args += ["--env", name]  # the value comes from podman's own environment
        if container.get("command"):
            args += ["--entrypoint", json.dumps([expand(c, env) for c in container["command"]])]
        return [*args, image, *(expand(a, env) for a in container.get("args", []))]

    def start(self, container: dict[str, Any]) -> str:
        env = resolve_env(container, self.render, self.name)
        name = self.container_name(container)
        podman(*self.run_args(container, env), env={**os.environ, **env})
        self.containers.append(name)
        self.started[name] = time.monotonic()
        return name

    def run_to_completion(self, container: dict[str, Any], timeout_s: float) -> None:
        name = self.start(container)
        try:
            code = int(podman("wait", name, timeout=timeout_s).strip() or -1)
        except subprocess.TimeoutExpired:
            raise PodError(
                f"{self.name}/{container['name']} still running after {timeout_s:.0f}s; "
                f"its log ends:\n{logs(name)}"
            ) from None
        if code != 0:
            raise PodError(
                f"{self.name}/{container['name']} exited {code}; its log ends:\n{logs(name)}"
            )

    def start_all(self, timeout_s: float) -> None:
        """Init containers one by one to completion, then every container (stand-ins for the
        containers whose image is not ours)."""
        self.prepare_volumes()
        for container in self.spec.get("initContainers", []):
            if not is_owned(container):
                self._stand_in(container)
                continue
            self.run_to_completion(container, timeout_s)
        for container in self.spec["containers"]:
            if is_owned(container):
                self.start(container)

    def _stand_in(self, container: dict[str, Any]) -> None:
        key = container["image"].split(":")[0]
        if key not in self.stand_ins:
            raise PodError(f"{self.name}: no stand-in for {container['image']} (not our image)")
        self.stand_ins[key](self, container)

    # --- readiness ---------------------------------------------------------------------------
    def wait_ready(self, timeout_s: float) -> None:
        """Each container of ours through its probes, the kubelet's way: the startupProbe (or,
        without one, the livenessProbe) must pass within its budget, ``initialDelaySeconds +
        failureThreshold x periodSeconds``, or the kubelet would restart the container; every
        probe run must answer within its ``timeoutSeconds``. Then the readinessProbe must pass
        within ``timeout_s`` (not ready is not restarted: the API waits for a first model)."""
        for container in self.spec["containers"]:
            if not is_owned(container):
                continue
            started = self.started[self.container_name(container)]
            first = container.get("startupProbe") or container.get("livenessProbe")
            if first:
                self._until_passes(container, first, started + probe_budget(first), "restart it")
            liveness = container.get("livenessProbe")
            if container.get("startupProbe") and liveness:
                deadline = time.monotonic() + probe_budget(liveness)
                self._until_passes(container, liveness, deadline, "restart it")
            if container.get("readinessProbe"):
                self._until_passes(
                    container, container["readinessProbe"], started + timeout_s, "not route to it"
                )

    def _until_passes(
        self, container: dict[str, Any], probe: dict[str, Any], deadline: float, then: str
    ) -> None:
        name = self.container_name(container)
        while True:
            ok, why = probe_once(name, container, probe)
            if ok:
                return
            if not running(name):
                raise PodError(
                    f"{self.name}/{container['name']} exited; its log ends:\n{logs(name)}"
                )
            if time.monotonic() >= deadline:
                kind = next(
                    k
                    for k in ("startupProbe", "livenessProbe", "readinessProbe")
                    if container.get(k) is probe
                )
                raise PodError(
                    f"{self.name}/{container['name']}: {kind} still failing ({why}) when its "
                    f"budget ran out; the kubelet would {then}. Its log ends:\n{logs(name)}"
                )
            time.sleep(min(probe.get("periodSeconds", 10), 2))

    def stop(self) -> None:
        for name in reversed(self.containers):
            podman("rm", "--force", "--time", "10", name, check=False)
        self.containers.clear()


def running(name: str) -> bool:
    return podman("inspect", "--format", "{{.State.Running}}", name, check=False).strip() == "true"


def logs(name: str, lines: int = 25) -> str:
    binary = podman_binary() or "podman"
    result = subprocess.run(
        [binary, *PODMAN_GLOBAL, "logs", "--tail", str(lines), name],
        capture_output=True,
        text=True,
        check=False,
    )
    return (result.stdout + result.stderr).strip()


def _port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for item in container.get("ports", []):
        if item.get("name") == port:
            return int(item["containerPort"])
    raise PodError(f"{container['name']}: no port named {port!r}")


def probe_budget(probe: dict[str, Any]) -> float:
    """Seconds the kubelet lets a probe fail from the container's start before it acts."""
    return probe.get("initialDelaySeconds", 0) + probe.get("failureThreshold", 3) * probe.get(
        "periodSeconds", 10
    )


def probe_once(name: str, container: dict[str, Any], probe: dict[str, Any]) -> tuple[bool, str]:
    """One run of a probe, as the kubelet runs it (host network: the pod is on 127.0.0.1):
    passed or not, and why not. A run slower than ``timeoutSeconds`` fails, as it does there."""
    timeout = probe.get("timeoutSeconds", 1)
    start = time.monotonic()
    if "exec" in probe:
        command = [podman_binary() or "podman", *PODMAN_GLOBAL, "exec", name]
        try:
            result = subprocess.run(
                [*command, *probe["exec"]["command"]],
                capture_output=True,
                text=True,
                check=False,
                timeout=timeout + EXEC_OVERHEAD_S,
            )
        except subprocess.TimeoutExpired:
            return False, f"exec took more than its timeoutSeconds={timeout}"
        if result.returncode != 0:
            return False, f"exec exited {result.returncode}: {result.stderr.strip()[-300:]}"
        return True, f"{time.monotonic() - start:.1f}s"
    if "httpGet" in probe:
        get = probe["httpGet"]
        url = f"{get.get('scheme', 'HTTP').lower()}://127.0.0.1:{_port(container, get['port'])}"
        try:
            with urllib.request.urlopen(url + get.get("path", "/"), timeout=timeout) as answer:
                return 200 <= answer.status < 400, f"HTTP {answer.status}"
        except urllib.error.HTTPError as error:
            return False, f"HTTP {error.code}"
        except (urllib.error.URLError, OSError) as error:
            return False, f"GET {get.get('path', '/')}: {error}"
    if "tcpSocket" in probe:
        port = _port(container, probe["tcpSocket"]["port"])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout):
                return True, "connected"
        except OSError as error:
            return False, f"connect {port}: {error}"
    raise PodError(f"{container['name']}: unsupported probe {sorted(probe)}")


def remove_all() -> None:
    """Every container a run of this harness left behind (a crashed session's too)."""
    names = podman(
        "ps", "--all", "--filter", f"label={LABEL}", "--format", "{{.Names}}", check=False
    )
    for name in names.split():
        podman("rm", "--force", "--time", "5", name, check=False)


class Forwarder:
    """A Service whose port differs from its pod's (``datasource:80`` -> 8000), as kube-proxy
    would map it, on 127.0.0.1."""

    def __init__(self, port: int, target: int) -> None:
        self.port, self.target = port, target
        self.server = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe_pair, args=(client,), daemon=True).start()

    def _pipe_pair(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=10)
        except OSError:
            client.close()
            return
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.server.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def service_hosts(render: Render) -> list[str]:
    """Every name a pod may use for a Service: short, namespaced and fully qualified."""
    names = []
    for service in render.services():
        name = service["metadata"]["name"]
        names += [name, f"{name}.mlops", f"{name}.mlops.svc", f"{name}.mlops.svc.cluster.local"]
    return names


def iter_ports(workload: dict[str, Any]) -> Iterator[int]:
    for container in pod_spec(workload)["containers"]:
        if is_owned(container):
            for port in container.get("ports", []):
                yield int(port["containerPort"])


def cgroup_usage(name: str) -> dict[str, int]:
    """A running container's usage as the kubelet reads it (cgroup v1, cgroupfs manager): the
    memory working set (usage less inactive file cache, what evictions and `kubectl top` use),
    the resident set, and the CPU time used so far in ns. Empty when the container is gone or its
    cgroup cannot be read."""
    path = podman("inspect", "--format", "{{.State.CgroupPath}}", name, check=False).strip("/\n ")
    if not path:  # an exited container has none (and "" would read the whole machine's)
        return {}
    memory = Path("/sys/fs/cgroup/memory") / path
    try:
        usage = int((memory / "memory.usage_in_bytes").read_text())
        stat = dict(line.split() for line in (memory / "memory.stat").read_text().splitlines())
        cpu_ns = int((Path("/sys/fs/cgroup/cpuacct") / path / "cpuacct.usage").read_text())
    except (OSError, ValueError):
        return {}
    return {
        "working_set": usage - int(stat.get("total_inactive_file", 0)),
        "rss": int(stat.get("total_rss", 0)),
        "cpu_ns": cpu_ns,
    }


@dataclass
class Usage:
    """What one container used while sampled: memory peaks, CPU time and the time it ran."""

    working_set: int = 0
    rss: int = 0
    first: tuple[float, int] | None = None  # (monotonic s, cpu ns) of the first sample
    last: tuple[float, int] | None = None
    peak_millicores: float = 0.0  # the busiest PEAK_WINDOW_S

    def mean_millicores(self) -> float:
        if not self.first or not self.last or self.last[0] <= self.first[0]:
            return 0.0
        return (self.last[1] - self.first[1]) / 1e6 / (self.last[0] - self.first[0])


class UsageSampler:
    """Peak memory and CPU of every container started so far, sampled every ``period_s`` in a
    background thread (the kubelet's metrics are sampled too); CPU peaks over ``window_s``."""

    def __init__(
        self, names: Callable[[], list[str]], period_s: float = 2.0, window_s: float = 10.0
    ) -> None:
        self.names, self.period_s, self.window_s = names, period_s, window_s
        self.usage: dict[str, Usage] = {}
        self._recent: dict[str, list[tuple[float, int]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            for name in self.names():
                sample = cgroup_usage(name)
                if sample:
                    self._add(name, time.monotonic(), sample)

    def _add(self, name: str, now: float, sample: dict[str, int]) -> None:
        usage = self.usage.setdefault(name, Usage())
        usage.working_set = max(usage.working_set, sample["working_set"])
        usage.rss = max(usage.rss, sample["rss"])
        usage.first = usage.first or (now, sample["cpu_ns"])
        usage.last = (now, sample["cpu_ns"])
        recent = [s for s in self._recent.get(name, []) if now - s[0] <= self.window_s]
        recent.append(usage.last)
        self._recent[name] = recent
        if recent[-1][0] - recent[0][0] >= self.window_s / 2:
            rate = (recent[-1][1] - recent[0][1]) / 1e6 / (recent[-1][0] - recent[0][0])
            usage.peak_millicores = max(usage.peak_millicores, rate)

    def stop(self) -> dict[str, Usage]:
        self._stop.set()
        self._thread.join(timeout=30)
        return self.usage
