"""Background processes of the local platform: started detached, tracked by pid files."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass(frozen=True)
class Service:
    """A process the local platform runs, with its log and pid file under the state folder."""

    name: str
    state_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        """The running process' pid, or None; a child of ours that exited is reaped first."""
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        _reap(pid)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def start(self, command: list[str], env: dict[str, str] | None = None) -> int:
        """Start unless already running (then the running pid is reused)."""
        running = self.pid()
        if running:
            return running
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        return process.pid

    def stop(self, timeout_s: float = 15.0) -> bool:
        """Stop the process group politely, then firmly; True if something was stopped."""
        pid = self.pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            _reap(pid)
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
        return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


class StartError(RuntimeError):
    """A service exited while starting, or was not healthy in time; the message says which."""


def answers(url: str) -> bool:
    """True when ``url`` answers 200 now."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(
    what: str, healthy: Callable[[], bool], timeout_s: float, process: Service | None = None
) -> None:
    """Poll ``healthy``; fail early, with the log's tail, if ``process`` died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if healthy():
            return
        if process is not None and process.pid() is None:
            tail = process.log_file.read_text(errors="replace")[-1500:]
            raise StartError(
                f"{what} exited while starting; the end of {process.log_file}:\n{tail}"
            )
        time.sleep(0.2)
    hint = f"; see `mlops logs {process.name}`" if process is not None else ""
    raise StartError(f"{what} was not healthy within {timeout_s:.0f}s{hint}")


def wait_http(url: str, timeout_s: float = 60.0, process: Service | None = None) -> None:
    """Wait until ``url`` answers 200."""
    wait_until(url, lambda: answers(url), timeout_s, process)
