"""Modeling benchmark: wall time and peak memory of the model pipeline at 100k and 1M clean rows.

Starts the local platform (PostgreSQL, S3, MLflow) in a temporary folder, fills CLEAN with
simulator listings through the real ingest and clean steps, then runs ``mlops pipeline run
model`` (decide → train → evaluate → promote → explain → record) in a child process, whose wall
time and peak RSS are measured. Prints ``key=value`` lines, SHAP's share of the time separately.

    python bench/train.py [--sizes 100000,1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlops_platform.datasource.client import Batch
from mlops_platform.datasource.simulator import SimulatorConfig, generate_batch
from mlops_platform.local import platform
from mlops_platform.pipelines.clean import clean_pending
from mlops_platform.pipelines.ingest import store_batch
from mlops_platform.settings import Settings, load_settings
from mlops_platform.storage.engine import make_engine
from mlops_platform.storage.migrate import upgrade_all

BATCH_ROWS = 100_000
CHILD = """
import json, sys, logging
from mlops_platform.settings import load_settings
from mlops_platform.pipelines.modeling import run_model_pipeline
logging.disable(logging.WARNING)
row = run_model_pipeline(load_settings())
print(json.dumps({k: row[k] for k in ("outcome", "timings", "train_steps", "candidate_family",
                  "validation_metrics", "candidate_metrics")}, default=str))
"""


def fill(settings: Settings, rows: int) -> int:
    """Simulator batches through ingest and clean until CLEAN holds about ``rows`` rows."""
    raw, clean = make_engine(settings.raw_url), make_engine(settings.clean_url)
    config = SimulatorConfig(batch_size=BATCH_ROWS, batches=max(1, rows // BATCH_ROWS))
    cleaned = 0
    for number in range(1, config.batches + 1):
        records = generate_batch(config, 1, "Wednesday", number)
        store_batch(raw, Batch.of("bench", 1, "Wednesday", number, records))
        cleaned += clean_pending(raw, clean, test_fraction=0.2).cleaned
    raw.dispose()
    clean.dispose()
    return cleaned


def run_model(settings: Settings) -> tuple[float, float, dict]:
    """Wall seconds, peak RSS (MB) and the pipeline's own report, from a child process."""
    env = {**os.environ, **settings.to_env()}
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE)
    output = child.stdout.read().decode() if child.stdout else ""
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"model pipeline failed (status {status}): {output[-2000:]}")
    return wall, usage.ru_maxrss / 1024, json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        base = platform.on_free_ports(load_settings(state_dir=Path(folder)))
        pg = base.pg_port
        try:
            platform.up(base, services=platform.CORE)
            postgres = platform.local_postgres(base)
            for size in sizes:
                settings = base.replace(
                    raw_db_url=f"postgresql://mlops:mlops@127.0.0.1:{pg}/raw_{size}",
                    clean_db_url=f"postgresql://mlops:mlops@127.0.0.1:{pg}/clean_{size}",
                    model_name=f"bench_{size}",
                    experiment_name=f"bench_{size}",
                )
                postgres.ensure_database(f"raw_{size}", "mlops", "mlops")
                postgres.ensure_database(f"clean_{size}", "mlops", "mlops")
                upgrade_all(settings.raw_url, settings.clean_url)
                rows = fill(settings, size)
                wall, peak_mb, report = run_model(settings)
                timings = report["timings"]
                validation = report["validation_metrics"]
                print(f"rows_{size}_clean_rows={rows}")
                print(f"rows_{size}_wall_s={wall:.1f}")
                print(f"rows_{size}_peak_rss_mb={peak_mb:.0f}")
                for step, seconds in timings.items():
                    print(f"rows_{size}_{step}_s={seconds:.1f}")
                for step, seconds in (report["train_steps"] or {}).items():
                    print(f"rows_{size}_train_{step.replace(' ', '_')}_s={seconds:.1f}")
                print(f"rows_{size}_shap_share={timings['explain'] / wall:.3f}")
                print(f"rows_{size}_family={report['candidate_family']}")
                for family, scores in (validation or {}).items():
                    print(f"rows_{size}_validation_mae_{family}={scores['mae']:.0f}")
                    print(f"rows_{size}_validation_r2_{family}={scores['r2']:.3f}")
        finally:
            platform.down(base)


if __name__ == "__main__":
    main()
