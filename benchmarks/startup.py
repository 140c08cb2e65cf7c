"""Start-up cost: a whole tiny run against ``python -c "import torch, mlflow"``, and the fast paths.

    python -m benchmarks.startup [--repeats 5]

Each command runs in a fresh process in a temporary directory (a fresh SQLite store each time, as a new user
gets); medians over repeats, interleaved. Target: tiny run - imports <= 4 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = {
    "import torch, mlflow": [sys.executable, "-c", "import torch, mlflow"],
    "tiny run (outliers, linear, 1 epoch)": [sys.executable, "-m", "harness", "data=outliers", "model=linear", "trainer.epochs=1", "trainer.progress=false"],
    "tiny run, plots off": [sys.executable, "-m", "harness", "data=outliers", "model=linear", "trainer.epochs=1", "trainer.progress=false", "tracking.log_plots=false"],
    "python -m harness --help": [sys.executable, "-m", "harness", "--help"],
    "python -m harness --cfg job": [sys.executable, "-m", "harness", "--cfg", "job"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for _ in range(args.repeats):
        for name, cmd in COMMANDS.items():
            with tempfile.TemporaryDirectory() as cwd:
                t0 = time.perf_counter()
                subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
                times[name].append(time.perf_counter() - t0)
    print("| command | median (s) | min-max (s) |\n|---|---:|---:|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f}-{max(values):.2f} |")
    extra = statistics.median(times["tiny run (outliers, linear, 1 epoch)"]) - statistics.median(times["import torch, mlflow"])
    print(f"\ntiny run - imports: {extra:.2f} s (target <= 4 s)")


if __name__ == "__main__":
    main()
