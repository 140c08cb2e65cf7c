"""Sweep throughput: the same sweep with Hydra's basic (sequential) launcher and with joblib in parallel.

    python -m benchmarks.sweeps [--n-jobs 2] [overrides...]

Default sweep: 4 segmentation jobs (dice, bce x 2 seeds, 10 epochs), each a few seconds of training, so the
parallel launcher's per-worker start-up (imports) is part of what it costs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

DEFAULT = ["data=segmentation", "variant=dice,bce", "seed=0,1", "trainer.epochs=10", "trainer.progress=false", "tracking.log_plots=false"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-jobs", type=int, default=2)
    args, overrides = parser.parse_known_args()
    overrides = overrides or DEFAULT
    results = {}
    parallel = ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.n_jobs}"]
    variants = (
        ("basic (sequential), torch threads default", []),
        (f"joblib n_jobs={args.n_jobs}, torch threads default", parallel),
        (f"joblib n_jobs={args.n_jobs}, trainer.threads=1", [*parallel, "trainer.threads=1"]),
    )
    for name, launcher in variants:
        with tempfile.TemporaryDirectory() as cwd:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "harness", "-m", *launcher, *overrides], cwd=cwd, check=True, capture_output=True)
            results[name] = time.perf_counter() - t0
            print(f"{name}: {results[name]:.1f} s", flush=True)
    seq, par, par1 = results.values()
    print(f"speed-up of the parallel launcher: {seq / par:.2f}x (default threads), {seq / par1:.2f}x (trainer.threads=1)")


if __name__ == "__main__":
    main()
