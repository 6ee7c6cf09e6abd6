"""Security scan of the umbrella chart's full render (defaults and each ci/*.yaml) with checkov.

Every finding is fixed in the charts or justified in charts/README.md ("Security scan" table);
a justification whose check no longer fires is stale and fails too."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.charts.conftest import CHARTS_DIR, REPO, UMBRELLA, ci_value_files, helm, required_values

CHECKOV = REPO / ".tools" / "checkov" / "bin" / "checkov"
ROW = re.compile(r"^\| `(CKV2?_K8S_\d+)` \| [^|]+ \| ([^|]+) \|$", re.M)


def justified() -> dict[str, str]:
    readme = (CHARTS_DIR / "README.md").read_text()
    section = readme.split("## Security scan", 1)[1].split("\n## ", 1)[0]
    return {check: reason.strip() for check, reason in ROW.findall(section)}


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """check id -> {kind/name of each failing resource} over every umbrella render."""
    if not CHECKOV.is_file():
        pytest.fail("checkov not found: run scripts/ensure-tools.sh (installs .tools/checkov)")
    folder = tmp_path_factory.mktemp("rendered")
    for values in [None, *ci_value_files(UMBRELLA)]:
        args = ["template", "mlops", str(CHARTS_DIR / UMBRELLA), "-n", "mlops"]
        args += required_values(UMBRELLA)
        text = helm(*args, *(["-f", str(values)] if values else []))
        (folder / f"{values.stem if values else 'defaults'}.yaml").write_text(text)
    result = subprocess.run(
        [str(CHECKOV), "-d", str(folder), "--framework", "kubernetes", "-o", "json", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr  # 1: findings, reported below
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    found: dict[str, set[str]] = {}
    for report in reports:
        assert report["summary"]["parsing_errors"] == 0
        assert report["summary"]["resource_count"] > 50, "the scan saw too little"
        for failed in report["results"]["failed_checks"]:
            resource = failed["resource"].split(".", 1)[-1]  # Kind.namespace.name -> namespace.name
            found.setdefault(failed["check_id"], set()).add(
                f"{failed['resource'].split('.')[0]}/{resource} ({failed['check_name']})"
            )
    return found


def test_every_finding_is_fixed_or_justified(findings: dict[str, set[str]]) -> None:
    unexplained = {
        check: sorted(where) for check, where in findings.items() if check not in justified()
    }
    assert not unexplained, (
        "fix these in the charts, or justify them in charts/README.md's Security scan table:\n"
        + json.dumps(unexplained, indent=2)
    )


def test_no_stale_justification(findings: dict[str, set[str]]) -> None:
    stale = set(justified()) - set(findings)
    assert not stale, f"these checks pass now: remove them from the README table: {stale}"


def test_justifications_say_why() -> None:
    reasons = justified()
    assert reasons, "the README's Security scan table was not found"
    for check, reason in reasons.items():
        assert len(reason.split()) >= 8, f"{check}: say why it is accepted and what to do instead"


def test_scan_covers_the_kubernetes_executor_rbac(tmp_path: Path) -> None:
    assert any("KubernetesExecutor" in path.read_text() for path in ci_value_files(UMBRELLA)), (
        "render the umbrella with the KubernetesExecutor (its RBAC) in a ci/*.yaml"
    )
