"""Share of a run's wall time spent in MLflow logging (params, per-epoch metrics, artifacts, plots).

    python -m benchmarks.tracking [overrides...]

Runs one real job (default: the synthetic segmentation data, 30 epochs, about 25 s on 2 CPU cores) into a SQLite
store with every ``harness.tracking.Run`` write timed, plus opening the store and creating the run. Creating a
fresh store (MLflow's schema migrations, once per store) is timed separately, before the run. Target: logging <= 2%
of the run's wall time.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import defaultdict

from hydra import compose, initialize_config_dir

import harness.run as run_module
from harness import tracking
from harness.__main__ import CONF_DIR

DEFAULT = ["data=segmentation", "trainer.epochs=30", "trainer.progress=false"]


def main() -> None:
    spent: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t0
                calls[name] += 1
        return wrapper

    for name in ("log_params", "set_tags", "log_metrics", "flush", "log_text", "log_figure", "end"):
        setattr(tracking.Run, name, timed(name, getattr(tracking.Run, name)))
    run_module.open_experiment = timed("open_experiment", run_module.open_experiment)
    run_module.start_run = timed("start_run", run_module.start_run)
    run_module.reap_orphans = timed("reap_orphans", run_module.reap_orphans)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        tracking.open_experiment(f"sqlite:///{tmp}/mlflow.db", "loss-harness")
        creation = time.perf_counter() - t0
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            cfg = compose("config", overrides=[*(sys.argv[1:] or DEFAULT), f"tracking.uri=sqlite:///{tmp}/mlflow.db"])
        t0 = time.perf_counter()
        run_module.execute(cfg)
        wall = time.perf_counter() - t0
    # log_metrics includes the flushes it triggers, end() the final flush: count each write once
    logging = sum(v for k, v in spent.items() if k not in ("flush", "log_figure"))
    plots = spent["log_figure"]
    print("| call | calls | seconds |\n|---|---:|---:|")
    for name in sorted(spent):
        print(f"| {name} | {calls[name]} | {spent[name]:.3f} |")
    print(f"\nfresh store created once beforehand in {creation:.2f} s (MLflow's migrations; not part of any run)")
    print(f"wall {wall:.1f} s; MLflow logging {logging:.2f} s = {100 * logging / wall:.2f}% "
          f"(+ plots rendered and uploaded: {plots:.2f} s = {100 * plots / wall:.2f}%)")


if __name__ == "__main__":
    main()
