"""Set-up benchmark: the locked environment installed by pip (the old `make install`) and by uv
(the new one), each into a fresh virtual environment with no download cache, alternating.

`make test` starts on a fresh machine with this install, so its time is paid by every CI run.
Both sides install the same thing: ``-c requirements.lock -e ".[dev]"``; the script checks that
they end with the same distributions. Prints ``key=value`` lines, ``speedup`` (pip / uv) last.

    python bench/install.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UV_VERSION = "0.13.9"  # as the Makefile pins it
LOCKED = ["-c", "requirements.lock", "-e", ".[dev]"]
UV_FLAGS = ["--no-cache", "--compile-bytecode"]  # bytecode: pip compiles it too


def _venv(where: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    return where / "bin" / "python"


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _installed(python: Path) -> set[str]:
    listing = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze", "--exclude-editable"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    names = {
        line.split("==")[0].lower().replace("_", "-").replace(".", "-") for line in listing.split()
    }
    return names - {"pip", "setuptools"}  # the venv's own, which uv leaves alone


def run_pip(scratch: Path) -> tuple[float, set[str]]:
    python = _venv(scratch / "pip")
    seconds = _timed([str(python), "-m", "pip", "install", "--quiet", "--no-cache-dir", *LOCKED])
    return seconds, _installed(python)


def run_uv(scratch: Path) -> tuple[float, set[str]]:
    python = _venv(scratch / "uv")
    start = time.perf_counter()
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-cache-dir", f"uv=={UV_VERSION}"],
        check=True,
    )
    uv = python.parent / "uv"
    subprocess.run(
        [str(uv), "pip", "install", "--python", str(python), "--quiet", *UV_FLAGS, *LOCKED],
        check=True,
        cwd=ROOT,
    )
    return time.perf_counter() - start, _installed(python) - {"uv"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"pip": [], "uv": []}
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-install-") as scratch:
            pip_s, pip_set = run_pip(Path(scratch))
            uv_s, uv_set = run_uv(Path(scratch))
        if pip_set != uv_set:
            sys.exit(f"pip and uv installed different sets: {sorted(pip_set ^ uv_set)}")
        times["pip"].append(pip_s)
        times["uv"].append(uv_s)
        print(f"run {run + 1}: pip {pip_s:.1f} s, uv {uv_s:.1f} s ({len(uv_set)} distributions)")
    pip_s, uv_s = statistics.median(times["pip"]), statistics.median(times["uv"])
    print(f"distributions={len(uv_set)}")
    print(f"pip_install_s={pip_s:.1f}")
    print(f"uv_install_s={uv_s:.1f}")
    print(f"speedup={pip_s / uv_s:.1f}")


if __name__ == "__main__":
    main()
