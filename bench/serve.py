"""Serving benchmark: our inference API against MLflow's own scoring server, same model, same load.

Starts the local platform (PostgreSQL, S3, MLflow) in a temporary folder, trains and promotes a
model on simulator data through the real pipelines, then serves ``models:/<name>@production``
two ways on loopback with the same worker count (``--workers``, default MLflow's own: 1):

- **ours** — ``mlops serve api`` (``POST /predict``), the compiled prediction path;
- **mlflow** — ``mlflow models serve --env-manager local`` (``POST /invocations``).

The same load generator (``wrk``, 8 connections) drives both with single-record and 100-record
requests, alternating servers over several runs; medians are reported. Also the in-process
per-row predict time of the compiled path and of the plain pipeline. Prints ``key=value``
lines, ``speedup`` (ours/MLflow requests/s, single record) last.

    python bench/serve.py [--runs 3] [--seconds 10] [--workers 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from mlops_platform.datasource.client import Batch
from mlops_platform.datasource.simulator import SimulatorConfig, generate_batch
from mlops_platform.local import platform
from mlops_platform.local.postgres import free_port
from mlops_platform.local.processes import Service, wait_http
from mlops_platform.pipelines import registry
from mlops_platform.pipelines.clean import clean_pending
from mlops_platform.pipelines.dataset import load_listings
from mlops_platform.pipelines.ingest import store_batch
from mlops_platform.pipelines.modeling import run_model_pipeline
from mlops_platform.schema import FEATURES, ListingFeatures
from mlops_platform.serving.compiled import build_predictor, frame_records
from mlops_platform.settings import Settings, load_settings
from mlops_platform.storage.engine import make_engine

CONNECTIONS = 8
BATCH = 100
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open("{body}"):read("*a")
"""


def _median_time(call: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def train_production(settings: Settings) -> None:
    raw, clean = make_engine(settings.raw_url), make_engine(settings.clean_url)
    config = SimulatorConfig(batch_size=5000, batches=3)
    for number in (1, 2, 3):
        records = generate_batch(config, 1, "Wednesday", number)
        store_batch(raw, Batch.of("bench", 1, "Wednesday", number, records))
        clean_pending(raw, clean, test_fraction=0.2)
        run_model_pipeline(settings)
    raw.dispose()
    clean.dispose()


def wrk(url: str, body_file: Path, seconds: int) -> dict[str, float]:
    """Requests/s and p50/p99 latency (ms) from one wrk run."""
    script = body_file.with_suffix(".lua")
    script.write_text(LUA.format(body=body_file))
    output = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"{url} answered {errors.group(1)} errors:\n{output}")

    def latency(percent: str) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
    }


def in_process(settings: Settings) -> dict[str, float]:
    """Per-row predict time of the compiled path and of the registered pipeline itself."""
    model = registry.load(settings, registry.production(settings))
    clean = make_engine(settings.clean_url)
    rows = load_listings(clean)
    clean.dispose()
    sample = rows.sample(500, random_state=1)
    predictor = build_predictor(model, sample)
    records = frame_records(sample)
    one = sample[list(FEATURES)].head(1)
    return {
        "compiled_path": predictor.path,
        "compiled_one_row_us": _median_time(lambda: predictor.predict_records(records[:1]), 2000)
        * 1e6,
        "compiled_per_row_batch100_us": _median_time(
            lambda: predictor.predict_records(records[:BATCH]), 300
        )
        / BATCH
        * 1e6,
        "pipeline_one_row_us": _median_time(lambda: model.predict(one), 200) * 1e6,
        "pipeline_per_row_batch100_us": _median_time(
            lambda: model.predict(sample[list(FEATURES)].head(BATCH)), 100
        )
        / BATCH
        * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--workers", type=int, default=1, help="processes of each server (MLflow's default: 1)"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk (make bench does this)")

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        scorer = free_port()
        settings = platform.on_free_ports(
            load_settings(
                state_dir=root,
                api_workers=args.workers,
                model_name="bench",
                experiment_name="bench",
            )
        )
        ours = Service("api", root)
        theirs = Service("scorer", root)
        try:
            platform.up(settings, services=platform.CORE)
            with contextlib.redirect_stdout(sys.stderr):  # MLflow prints run links
                train_production(settings)
            env = {**os.environ, **settings.to_env()}
            ours.start([sys.executable, "-m", "mlops_platform.cli", "serve", "api"], env)
            theirs.start(
                [
                    sys.executable,
                    "-m",
                    "mlflow",
                    "models",
                    "serve",
                    "-m",
                    f"models:/{settings.model_name}@{settings.model_alias}",
                    "--env-manager",
                    "local",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(scorer),
                    "-w",
                    str(args.workers),
                ],
                {
                    **env,
                    "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
                    # MLflow starts its server as plain `uvicorn`: it must be on PATH.
                    "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                },
            )
            wait_http(f"{settings.api_url}/readyz", timeout_s=180, process=ours)
            wait_http(f"http://127.0.0.1:{scorer}/ping", timeout_s=180, process=theirs)
            print(f"ours_path={httpx.get(f'{settings.api_url}/model').json().get('path')}")
            print(f"workers={args.workers}")
            results = measure(root, settings.api_url, f"http://127.0.0.1:{scorer}", args)
            report(results, in_process(settings))
        finally:
            theirs.stop()
            ours.stop()
            platform.down(settings)


def measure(root: Path, ours: str, theirs: str, args: argparse.Namespace) -> dict:
    records = generate_batch(SimulatorConfig(batch_size=400, dirty_rate=0.0), 9, "Monday", 1)
    valid = []
    for record in records:
        try:
            features = {k: v for k, v in record.items() if k != "price"}
            valid.append(json.loads(ListingFeatures.model_validate(features).model_dump_json()))
        except ValueError:
            continue
    bodies = {
        ("ours", "single"): valid[0],
        ("ours", "batch"): valid[:BATCH],
        ("mlflow", "single"): {"dataframe_records": valid[:1]},
        ("mlflow", "batch"): {"dataframe_records": valid[:BATCH]},
    }
    urls = {"ours": f"{ours}/predict", "mlflow": f"{theirs}/invocations"}
    files = {}
    for key, body in bodies.items():
        files[key] = root / f"{key[0]}-{key[1]}.json"
        files[key].write_text(json.dumps(body))
    for server, kind in bodies:  # warm up both, and check both answer 200
        response = httpx.post(
            urls[server],
            content=files[(server, kind)].read_bytes(),
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
        response.raise_for_status()
    runs: dict = {key: [] for key in bodies}
    for _ in range(args.runs):
        for kind in ("single", "batch"):
            for server in ("ours", "mlflow"):
                runs[(server, kind)].append(wrk(urls[server], files[(server, kind)], args.seconds))
    return runs


def report(runs: dict, local: dict) -> None:
    medians = {}
    for (server, kind), samples in runs.items():
        rows = 1 if kind == "single" else BATCH
        for metric in ("rps", "p50_ms", "p99_ms"):
            medians[(server, kind, metric)] = statistics.median(s[metric] for s in samples)
        print(f"{server}_{kind}_requests_per_s={medians[(server, kind, 'rps')]:.0f}")
        print(f"{server}_{kind}_rows_per_s={medians[(server, kind, 'rps')] * rows:.0f}")
        print(f"{server}_{kind}_p50_ms={medians[(server, kind, 'p50_ms')]:.2f}")
        print(f"{server}_{kind}_p99_ms={medians[(server, kind, 'p99_ms')]:.2f}")
    for key, value in local.items():
        print(f"{key}={value:.1f}" if isinstance(value, float) else f"{key}={value}")
    for kind in ("single", "batch"):
        ratio = medians[("ours", kind, "p99_ms")] / medians[("mlflow", kind, "p99_ms")]
        print(f"p99_ratio_{kind}={ratio:.3f}")

    def ratio(kind: str) -> float:
        return medians[("ours", kind, "rps")] / medians[("mlflow", kind, "rps")]

    print(f"batch_speedup={ratio('batch'):.2f}")
    print(f"speedup={ratio('single'):.2f}")


if __name__ == "__main__":
    main()
