"""Every `mlops ...` command a chart runs exists in the package, with the options it is given.

Every chart in charts/ is rendered (defaults and each ci/*.yaml); every container whose
command + args start with `mlops` (or whose shell script calls `mlops`) contributes its
subcommand words and options. `mlops <words> --help` must exit 0 and list each option, so a
renamed command or flag fails here instead of in a crash-looping pod."""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.charts.conftest import (
    ALL_CHARTS,
    REPO,
    HelmError,
    all_containers,
    ci_value_files,
    render_files,
    workloads,
)

MLOPS = REPO / ".venv" / "bin" / "mlops"
SHELLS = {"sh", "bash", "/bin/sh", "/bin/bash", "/usr/bin/env"}
# The commands of charts/README.md's contract: at least these must be found.
EXPECTED = {("serve", "api"), ("serve", "ui"), ("datasource", "serve")}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# `mlops` at a command position of a shell script, then its words up to the end of the command.
_IN_SCRIPT = re.compile(r"(?:^|[\s;&|(])(?:exec\s+)?mlops((?:[ \t]+[^\s;&|)]+)*)", re.M)


def split_invocation(tokens: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`serve api --host 0.0.0.0 --port 8989` -> (("serve", "api"), ("--host", "--port"))."""
    words: list[str] = []
    options: list[str] = []
    for token in tokens:
        if token.startswith("-"):
            if token.startswith("--"):
                options.append(token.split("=", 1)[0])
            elif len(token) > 1:
                options.append(token[:2])
        elif not options:
            words.append(token)
    return tuple(words), tuple(options)


def invocations(container: dict) -> list[list[str]]:
    """The argument lists after `mlops` that this container runs."""
    full = [*container.get("command", []), *container.get("args", [])]
    if not full:
        return []
    if Path(full[0]).name == "mlops":
        return [full[1:]]
    if full[0] in SHELLS:
        script = "\n".join(t for t in full[1:] if not re.fullmatch(r"-\w+", t))
        found = []
        for match in _IN_SCRIPT.finditer(script):
            try:
                found.append(shlex.split(match.group(1)))
            except ValueError:
                found.append(match.group(1).split())
        return found
    return []


def collect() -> tuple[dict[tuple[str, ...], dict[str, set[str]]], list[str]]:
    """{subcommand words: {option: set of "chart/case/workload/container" using it}}, errors."""
    commands: dict[tuple[str, ...], dict[str, set[str]]] = {}
    errors = []
    for chart in ALL_CHARTS:
        for values in [None, *ci_value_files(chart)]:
            case = f"{chart}/{values.stem if values else 'defaults'}"
            try:
                rendered = render_files(chart, [values] if values else [])
            except HelmError as error:
                errors.append(f"{case}: {error}")
                continue
            for workload in workloads(rendered):
                for container in all_containers(workload):
                    where = f"{case}/{workload['metadata']['name']}/{container['name']}"
                    for tokens in invocations(container):
                        words, options = split_invocation(tokens)
                        users = commands.setdefault(words, {"": set()})
                        users[""].add(where)
                        for option in options:
                            users.setdefault(option, set()).add(where)
    return commands, errors


COMMANDS, RENDER_ERRORS = collect()


@functools.cache
def help_text(words: tuple[str, ...]) -> tuple[int, str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    result = subprocess.run(
        [str(MLOPS), *words, "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=env,
    )
    return result.returncode, _ANSI.sub("", result.stdout + result.stderr)


def test_every_chart_renders() -> None:
    assert not RENDER_ERRORS, "\n".join(RENDER_ERRORS)


def test_the_contract_commands_are_used() -> None:
    assert set(COMMANDS) >= EXPECTED, f"missing: {EXPECTED - set(COMMANDS)}"


@pytest.mark.parametrize("words", sorted(COMMANDS), ids=lambda w: " ".join(w) or "mlops")
def test_command_exists_with_its_options(words: tuple[str, ...]) -> None:
    users = COMMANDS[words]
    code, text = help_text(words)
    assert code == 0, (
        f"`mlops {' '.join(words)} --help` failed (used by {sorted(users[''])}):\n{text}"
    )
    for option, where in sorted(users.items()):
        if option:
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), (
                f"`mlops {' '.join(words)}` has no {option} (passed by {sorted(where)})"
            )


@pytest.mark.parametrize(
    ("container", "expected"),
    [
        (
            {"command": ["mlops"], "args": ["serve", "api", "--port=8989"]},
            [["serve", "api", "--port=8989"]],
        ),
        ({"command": ["/opt/mlops/bin/mlops", "db", "upgrade"]}, [["db", "upgrade"]]),
        (
            {"command": ["/bin/sh", "-ec"], "args": ["wait-for-db\nexec mlops db upgrade --x 1\n"]},
            [["db", "upgrade", "--x", "1"]],
        ),
        ({"command": ["airflow"], "args": ["scheduler"]}, []),
    ],
)
def test_invocations_are_found(container: dict, expected: list[list[str]]) -> None:
    assert invocations(container) == expected
    assert split_invocation(["serve", "api", "--host", "0.0.0.0", "-v"]) == (
        ("serve", "api"),
        ("--host", "-v"),
    )
