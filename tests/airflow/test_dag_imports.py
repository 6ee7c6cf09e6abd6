"""DAG files parse in milliseconds and quietly: nothing heavy at top level, no warning flood.

Airflow's dag-processor re-parses every DAG file every 30 s. Each check runs in a fresh
interpreter (this session's ``sys.modules`` says nothing about what a DAG file imports, and Airflow
must not be imported here before ``conftest`` configures it). Import times are recorded
(``user_properties``, and logged: ``-o log_cli=true`` shows them), never asserted: they depend on
the machine.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.airflow.conftest import DAGS

log = logging.getLogger(__name__)

DAG_FILES = sorted(DAGS.glob("*.py"))
HEAVY = ("sklearn", "mlflow", "skops", "shap", "pandas")

# argv: DAG file, result file. Imports the DAG file the way DagBag does (by path, as a module).
IMPORT_PROBE = f"""
import importlib.util, json, sys, time
start = time.perf_counter()
import airflow.sdk
airflow_s = time.perf_counter() - start
before = len(sys.modules)
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
seconds = time.perf_counter() - start
heavy = [name for name in {HEAVY!r} if name in sys.modules]
with open(sys.argv[2], "w") as out:
    json.dump({{"airflow_s": airflow_s, "seconds": seconds, "heavy": heavy,
               "modules": len(sys.modules) - before}}, out)
"""

# argv: DAG file, result file. Parses it with Airflow's DagBag, as the dag-processor does, and
# keeps every warning that Python would have shown (the filters in force are left as they are),
# and the ones DagBag kept for the file (what the dag-processor stores and logs per file).
PARSE_PROBE = """
import json, sys, warnings
from airflow.dag_processing.dagbag import DagBag
with warnings.catch_warnings(record=True) as caught:
    bag = DagBag(dag_folder=sys.argv[1])
with open(sys.argv[2], "w") as out:
    json.dump({
        "dags": sorted(bag.dag_ids),
        "errors": {str(path): str(error) for path, error in bag.import_errors.items()},
        "warnings": [
            f"{w.category.__name__} from {w.filename}:{w.lineno}: {w.message}" for w in caught
        ],
        "captured": {str(path): list(found) for path, found in bag.captured_warnings.items()},
    }, out)
"""


def _probe(code: str, dag_file: Path, tmp_path: Path) -> tuple[dict[str, Any], str]:
    """Run ``code`` on ``dag_file`` in a fresh interpreter: its result and everything it printed."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    env |= {
        "AIRFLOW_HOME": str(tmp_path / "airflow_home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    result = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, "-c", code, str(dag_file), str(result)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    return json.loads(result.read_text()), output


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda path: path.stem)
def test_a_dag_file_imports_nothing_heavy(
    dag_file: Path, tmp_path: Path, record_property: Any
) -> None:
    """scikit-learn, MLflow, skops, SHAP and pandas are for the tasks, imported when they run."""
    found, _ = _probe(IMPORT_PROBE, dag_file, tmp_path)
    record_property("airflow_sdk_import_s", round(found["airflow_s"], 3))
    record_property("import_s_beyond_airflow", round(found["seconds"], 3))
    record_property("modules_beyond_airflow", found["modules"])
    log.info(
        "%s: %.3f s and %d modules beyond airflow.sdk (itself %.3f s)",
        dag_file.name,
        found["seconds"],
        found["modules"],
        found["airflow_s"],
    )
    assert found["heavy"] == [], f"{dag_file.name} imports {found['heavy']} at parse time"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda path: path.stem)
def test_parsing_a_dag_file_warns_nothing(
    dag_file: Path, tmp_path: Path, record_property: Any
) -> None:
    """No warning at all: each one is a log line, every 30 s, for as long as Airflow runs.

    Zero, not "fewer than N": before the fix each parse of the modeling and production DAGs
    gave 1,160 (Airflow's deprecated-import warnings raised by skops' module walk), and a new
    warning from a DAG file is worth a look, not a budget.
    """
    found, output = _probe(PARSE_PROBE, dag_file, tmp_path)
    assert found["errors"] == {}
    assert found["dags"] == [dag_file.stem]
    record_property("parse_output_lines", len(output.splitlines()))
    shown = found["warnings"]
    assert shown == [], f"{len(shown)} warnings, the first: {shown[:3]}"
    assert found["captured"] == {}


# argv: (unused), result file. What a modeling task's process does: Airflow first, then the work.
TASK_PROBE = """
import json, sys, warnings
import airflow.sdk
with warnings.catch_warnings(record=True) as caught:
    from mlops_platform.pipelines import modeling, publish  # what the tasks import
    import skops.io  # as MLflow does when it saves or loads a model
with open(sys.argv[2], "w") as out:
    json.dump([f"{w.category.__name__} from {w.filename}: {w.message}" for w in caught], out)
"""


def test_a_modeling_task_does_not_flood_its_log(tmp_path: Path) -> None:
    """skops' import-time walk over every loaded module warns nothing where Airflow is loaded."""
    caught, _ = _probe(TASK_PROBE, DAGS / "modeling_pipeline.py", tmp_path)
    from_skops = [line for line in caught if "skops" in line]
    assert from_skops == [], f"{len(from_skops)} warnings, first: {from_skops[:3]}"
