"""Benchmark of the platform's image: size, build time cold and cached, and `make images-test`.

    python bench/images.py                 size, cached rebuild (median of --runs)
    python bench/images.py --cold          also a cold build in an empty container storage,
                                           stand-in base included (what a fresh machine pays)
    python bench/images.py --test          also the time of the image tests (tests/images)

Prints key=value lines. The cold build uses its own containers-storage (CONTAINERS_STORAGE_CONF
pointing at a temporary folder), so the store `make images` uses is left as it is.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "images.sh"


def build(env: dict[str, str]) -> dict[str, float]:
    """One run of scripts/images.sh: wall seconds, and the stand-in's seconds when it built one."""
    start = time.monotonic()
    result = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, check=False, cwd=ROOT
    )
    wall = time.monotonic() - start
    if result.returncode != 0:
        sys.exit(f"scripts/images.sh failed:\n{result.stderr[-3000:]}")
    found = {"wall_s": wall}
    stand_in = re.search(r"stand-in base .* ready in (\d+) s", result.stderr)
    if stand_in:
        found["standin_s"] = float(stand_in.group(1))
    size = re.search(r"bytes=(\d+)", result.stdout)
    if size:
        found["bytes"] = float(size.group(1))
    return found


def storage_env(folder: Path) -> dict[str, str]:
    conf = folder / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{folder / "graph"}"\n'
        f'runroot = "{folder / "run"}"\n'
    )
    return {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf), "MLOPS_IMAGE_ENGINE": "buildah"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="cached rebuilds (median)")
    parser.add_argument("--cold", action="store_true", help="also a cold build (~10 min)")
    parser.add_argument("--test", action="store_true", help="also time tests/images")
    args = parser.parse_args()

    env = dict(os.environ)
    if args.cold:
        with tempfile.TemporaryDirectory(prefix="mlops-bench-storage-", dir="/var/tmp") as tmp:
            cold_env = storage_env(Path(tmp))
            cold = build(cold_env)
            print(f"build_cold_s={cold['wall_s'] - cold.get('standin_s', 0):.0f}")
            print(f"standin_base_s={cold.get('standin_s', 0):.0f}")
            print(f"fresh_machine_s={cold['wall_s']:.0f}")
            subprocess.run(["buildah", "rm", "--all"], env=cold_env, capture_output=True)
            subprocess.run(
                ["buildah", "rmi", "--all", "--force"], env=cold_env, capture_output=True
            )
    runs = [build(env) for _ in range(args.runs)]  # --runs 0: the cold build only
    last = runs[-1] if runs else cold if args.cold else {}
    print(f"image_bytes={int(last.get('bytes', 0))}")
    print(f"image_gb={last.get('bytes', 0) / 1e9:.2f}")
    if runs:
        print(f"build_cached_s={statistics.median(r['wall_s'] for r in runs):.1f}")
    if args.test:
        start = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/images", "-q", "-rA"],
            cwd=ROOT,
            env={**env, "PATH": f"{ROOT / '.tools' / 'bin'}:{env['PATH']}"},
            capture_output=True,
            text=True,
            check=False,
        )
        print(f"images_test_s={time.monotonic() - start:.0f}")
        print(f"images_test_ok={int(result.returncode == 0)}")
        for line in result.stdout.splitlines():
            if line.startswith(("ready=", "failed=")):
                name, seconds = line.split("=", 1)[1].split(" ", 1)
                print(f"ready_s.{name}={seconds.split()[0]}")
            elif line.startswith("usage="):  # peak memory and CPU per container
                container, *fields = line.split("=", 1)[1].split()
                for field in fields:
                    key, value = field.split("=", 1)
                    print(f"usage.{container}.{key}={value}")


if __name__ == "__main__":
    main()
