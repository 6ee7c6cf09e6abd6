"""DAG parsing benchmark: what importing each file in ``dags/`` costs beyond Airflow itself.

Airflow's dag-processor re-parses every DAG file every 30 s, so a DAG file should cost little
more than Airflow's own ``airflow.sdk``. Each run is a fresh interpreter under
``python -X importtime`` that imports ``airflow.sdk`` first, then the DAG file as a module;
the DAG module's cumulative import time is the time beyond Airflow (``-X importtime`` counts only
modules not already loaded). Per DAG file, medians over the runs:

- ``<dag>_import_s`` — seconds to import the DAG file beyond ``import airflow.sdk``;
- ``<dag>_modules`` — modules it loads beyond ``airflow.sdk``;
- ``<dag>_heavy`` — ``yes`` if scikit-learn, MLflow, skops, SHAP or pandas got imported (and
  ``<dag>_heavy_modules`` lists which);
- ``<dag>_output_lines`` — lines written to stdout/stderr while importing it (warnings that
  would land in the dag-processor's log), ``-X importtime`` lines excluded.

Also ``airflow_sdk_import_s``, the median seconds of ``import airflow.sdk`` itself, for scale.
``--dags DIR`` measures another copy of the DAG files, e.g. an older commit's (``git archive`` it
and put its ``src`` first on ``PYTHONPATH``).

    python bench/dag_parse.py [--runs 5] [--dags dags]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("sklearn", "mlflow", "skops", "shap", "pandas")

# Runs in the fresh interpreter: argv = dags folder, DAG module name, result file.
PROBE = f"""
import json, sys, time
start = time.perf_counter()
import airflow.sdk
airflow_s = time.perf_counter() - start
before = set(sys.modules)
sys.path.insert(0, sys.argv[1])
__import__(sys.argv[2])
loaded = set(sys.modules) - before
heavy = sorted(name for name in {HEAVY!r} if name in sys.modules)
with open(sys.argv[3], "w") as out:
    json.dump({{"modules": len(loaded), "heavy": heavy, "airflow_s": airflow_s}}, out)
"""


def cumulative_s(importtime: str, module: str) -> float:
    """The cumulative seconds of ``module``'s line in ``-X importtime`` output."""
    for line in importtime.splitlines():
        if line.startswith("import time:") and line.rsplit("|", 1)[-1].strip() == module:
            return int(line.split("|")[1]) / 1e6
    raise ValueError(f"{module} not in the -X importtime output")


def parse_once(dags: Path, name: str, home: Path) -> dict:
    """One fresh interpreter importing ``airflow.sdk`` then ``dags/<name>.py``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", PROBE, str(dags), name, result.name],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"importing {name} failed:\n{done.stderr[-3000:]}")
        found = json.loads(Path(result.name).read_text())
    output = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if not line.startswith("import time:")
    ]
    return found | {
        "import_s": cumulative_s(done.stderr, name),
        "output_lines": len(output),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dags", type=Path, default=ROOT / "dags")
    args = parser.parse_args()
    names = sorted(path.stem for path in args.dags.glob("*.py") if not path.stem.startswith("_"))
    results: dict[str, list[dict]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="dag-parse-") as home:
        for _ in range(args.runs):
            for name in names:  # files alternate within a run
                results[name].append(parse_once(args.dags.resolve(), name, Path(home)))
    print(f"runs={args.runs}")
    airflow_s = [run["airflow_s"] for runs in results.values() for run in runs]
    print(f"airflow_sdk_import_s={statistics.median(airflow_s):.3f}")
    for name, runs in results.items():
        heavy = sorted({module for run in runs for module in run["heavy"]})
        print(f"{name}_import_s={statistics.median(r['import_s'] for r in runs):.3f}")
        print(f"{name}_modules={statistics.median(r['modules'] for r in runs):.0f}")
        print(f"{name}_heavy={'yes' if heavy else 'no'}")
        print(f"{name}_heavy_modules={','.join(heavy) or '-'}")
        print(f"{name}_output_lines={statistics.median(r['output_lines'] for r in runs):.0f}")


if __name__ == "__main__":
    main()
