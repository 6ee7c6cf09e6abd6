"""The one-machine platform: how long `mlops up` takes until every service is healthy, how much
memory the whole platform holds, and how long `mlops demo` takes.

    python bench/local_platform.py [--runs 3] [--demo-runs 1] [--idle 60]

Each run uses a fresh state folder on free ports (nothing of a running `mlops up` is touched):
- cold: `mlops up --no-pipeline` on an empty folder (initdb, migrations, buckets included);
- warm: `mlops down` then `mlops up --no-pipeline` again on the same folder (data kept);
- first model: `mlops up` (services + the first data and modeling pipeline) on an empty folder.
Memory is the proportional set size (PSS, shared pages split between processes) summed over
every process of the platform, sampled every 0.5 s from `mlops up` to ``--idle`` seconds after
it (Airflow's scheduler runs the data DAG meanwhile). Prints key=value lines; medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from mlops_platform.local import platform
from mlops_platform.settings import Settings, load_settings

MIB = 1024 * 1024


def mlops(args: list[str], settings: Settings) -> float:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "mlops_platform.cli", *args],
        env={**os.environ, **settings.to_env()},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"mlops {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return time.monotonic() - started


def platform_processes(settings: Settings) -> list[psutil.Process]:
    """Every service's process and its descendants (Airflow's task processes included)."""
    found = []
    for name in platform.ALL:
        pid = platform.pid_of(settings, name)
        if pid is None:
            continue
        try:
            root = psutil.Process(pid)
            found += [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
    return found


def pss(processes: list[psutil.Process]) -> tuple[int, dict[str, int]]:
    total, by_name = 0, {}
    for process in processes:
        try:
            value = process.memory_full_info().pss
            name = process.name()
        except psutil.Error:
            continue
        total += value
        by_name[name] = by_name.get(name, 0) + value
    return total, by_name


class Sampler(threading.Thread):
    """Peak PSS of the platform while it runs."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings, self.stop = settings, threading.Event()
        self.peak, self.last, self.peak_by_name = 0, 0, {}

    def run(self) -> None:
        while not self.stop.is_set():
            total, by_name = pss(platform_processes(self.settings))
            self.last = total
            if total > self.peak:
                self.peak, self.peak_by_name = total, by_name
            time.sleep(0.5)


def fresh(folder: Path) -> Settings:
    return platform.on_free_ports(load_settings(state_dir=folder / "state"))


def measure_up(runs: int, idle_s: float) -> dict[str, float]:
    cold, warm, first, peaks, steady = [], [], [], [], []
    for run in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-up-") as folder:
            settings = fresh(Path(folder))
            try:
                cold.append(mlops(["up", "--no-pipeline"], settings))
                mlops(["down"], settings)
                warm.append(mlops(["up", "--no-pipeline"], settings))
            finally:
                mlops(["down"], settings)
        with tempfile.TemporaryDirectory(prefix="bench-first-") as folder:
            settings = fresh(Path(folder))
            sampler = Sampler(settings)
            sampler.start()
            try:
                first.append(mlops(["up"], settings))
                time.sleep(idle_s)
                steady.append(sampler.last)
            finally:
                sampler.stop.set()
                sampler.join()
                mlops(["down"], settings)
            peaks.append(sampler.peak)
            top = sorted(sampler.peak_by_name.items(), key=lambda kv: -kv[1])[:6]
            print(
                f"# run {run + 1}: peak {sampler.peak / MIB:.0f} MiB PSS; largest: "
                + ", ".join(f"{name} {value / MIB:.0f}" for name, value in top),
                file=sys.stderr,
            )
    return {
        "up_cold_s": statistics.median(cold),
        "up_warm_s": statistics.median(warm),
        "up_with_first_model_s": statistics.median(first),
        "platform_peak_pss_mib": statistics.median(peaks) / MIB,
        "platform_steady_pss_mib": statistics.median(steady) / MIB,
    }


def measure_demo(runs: int) -> dict[str, float]:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-demo-") as folder:
            times.append(mlops(["demo"], fresh(Path(folder))))
    return {"demo_s": statistics.median(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each `mlops up` measure")
    parser.add_argument("--demo-runs", type=int, default=1, help="runs of `mlops demo`")
    parser.add_argument("--idle", type=float, default=60, help="seconds sampled after up")
    args = parser.parse_args()
    print(f"cpus={os.cpu_count()}")
    print(f"load_average_1m={os.getloadavg()[0]:.2f}")
    for key, value in {**measure_up(args.runs, args.idle), **measure_demo(args.demo_runs)}.items():
        print(f"{key}={value:.1f}")


if __name__ == "__main__":
    main()
