"""Share of a run's wall time spent in MLflow logging (params, per-epoch metrics, artifacts, plots), and what a team
server costs per run against the SQLite default.

    python -m benchmarks.tracking [overrides...]
    python -m benchmarks.tracking --server [--repeats 4] [overrides...]

Default: runs one real job (the synthetic segmentation data, 30 epochs, about 25 s on 2 CPU cores) into a SQLite
store with every ``harness.tracking.Run`` write timed, plus opening the store and creating the run. Creating a fresh
store (MLflow's schema migrations, once per store) is timed separately, before the run. Target: logging <= 2% of
the run's wall time.

``--server``: starts a private PostgreSQL cluster and ``mlflow server`` on it (:mod:`harness.server`; needs Debian's
``postgresql`` and the ``team`` extra), then runs the same job (default: the outliers data, 100 epochs, plots on: a
short run, where tracking weighs most) into the server and into a SQLite store, alternating, ``--repeats`` times
each, and reports the median seconds of tracking per run (every write, opening the store, creating the run) and of
the whole run, server against SQLite.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from hydra import compose, initialize_config_dir

import harness.run as run_module
from harness import tracking
from harness.__main__ import CONF_DIR

DEFAULT = ["data=segmentation", "trainer.epochs=30", "trainer.progress=false"]
SERVER_DEFAULT = ["data=outliers", "trainer.epochs=100", "trainer.progress=false"]
WRITES = ("log_params", "set_tags", "log_metrics", "flush", "log_text", "log_figure", "end")
SETUP = ("open_experiment", "start_run", "reap_orphans")

spent: dict[str, float] = defaultdict(float)
calls: dict[str, int] = defaultdict(int)


def _timed(name, fn):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - t0
            calls[name] += 1
    return wrapper


def instrument() -> None:
    """Time every write of a run and the store set-up of ``harness.run`` (once per process)."""
    for name in WRITES:
        setattr(tracking.Run, name, _timed(name, getattr(tracking.Run, name)))
    for name in SETUP:
        setattr(run_module, name, _timed(name, getattr(run_module, name)))


def measure(uri: str, overrides: list[str]) -> tuple[float, float, float]:
    """One run of ``overrides`` into ``uri``: wall seconds, tracking seconds without plots, plot seconds (the seconds
    per call stay in ``spent``). log_metrics includes the flushes it triggers and end() the final flush, so each write
    counts once."""
    spent.clear()
    calls.clear()
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, f"tracking.uri={uri}"])
    t0 = time.perf_counter()
    run_module.execute(cfg)
    wall = time.perf_counter() - t0
    return wall, sum(v for k, v in spent.items() if k not in ("flush", "log_figure")), spent["log_figure"]


def sqlite_share(overrides: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        tracking.open_experiment(f"sqlite:///{tmp}/mlflow.db", "loss-harness")
        creation = time.perf_counter() - t0
        wall, logging, plots = measure(f"sqlite:///{tmp}/mlflow.db", overrides)
    print("| call | calls | seconds |\n|---|---:|---:|")
    for name in sorted(spent):
        print(f"| {name} | {calls[name]} | {spent[name]:.3f} |")
    print(f"\nfresh store created once beforehand in {creation:.2f} s (MLflow's migrations; not part of any run)")
    print(f"wall {wall:.1f} s; MLflow logging {logging:.2f} s = {100 * logging / wall:.2f}% "
          f"(+ plots rendered and uploaded: {plots:.2f} s = {100 * plots / wall:.2f}%)")


def server_against_sqlite(overrides: list[str], repeats: int) -> None:
    from harness import server as team

    def free_port() -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # PostgreSQL runs as user postgres when we are root
        pgdata = root / "pgdata"
        base = team.start_cluster(pgdata, free_port())
        try:
            started = time.perf_counter()
            with contextlib.redirect_stdout(sys.stderr), team.running_server(
                    base.rsplit("/", 1)[0] + "/mlflow", root / "artifacts", port=free_port(), log=root / "server.log") as (uri, _):
                ready = time.perf_counter() - started
                sqlite = f"sqlite:///{root / 'mlflow.db'}"
                for store in (uri, sqlite):  # stores and experiments exist before the timed runs, as in daily use
                    tracking.open_experiment(store, "loss-harness")
                measure(sqlite, overrides)  # warm-up: imports, first plots
                rows: dict[str, list[tuple[float, float, float]]] = {"server": [], "sqlite": []}
                per_call: dict[str, list[dict[str, float]]] = {"server": [], "sqlite": []}
                for _ in range(repeats):
                    for name, store in (("server", uri), ("sqlite", sqlite)):
                        with contextlib.redirect_stdout(sys.stderr):
                            rows[name].append(measure(store, overrides))
                        per_call[name].append(dict(spent))
        finally:
            team.stop_cluster(pgdata)
    med = {name: [statistics.median(r[i] for r in runs) for i in range(3)] for name, runs in rows.items()}
    print(f"job: {' '.join(overrides)}; {repeats} runs per store, alternating; medians (min-max)")
    print(f"server (PostgreSQL backend, proxied artifacts) answered {ready:.0f} s after start\n")
    print("| store | run wall (s) | tracking (s) | plots rendered + uploaded (s) |\n|---|---:|---:|---:|")
    for name, runs in rows.items():
        cells = []
        for i in range(3):
            values = [r[i] for r in runs]
            cells.append(f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})")
        print(f"| {name} | {' | '.join(cells)} |")
    print("\n| call (median s) | server | sqlite |\n|---|---:|---:|")
    for call in sorted(per_call["server"][0]):
        cells = [statistics.median(d.get(call, 0.0) for d in per_call[name]) for name in ("server", "sqlite")]
        print(f"| {call} | {cells[0]:.3f} | {cells[1]:.3f} |")
    s, q = med["server"], med["sqlite"]
    print(f"\nserver - SQLite per run: wall {s[0] - q[0]:+.3f} s, tracking {s[1] - q[1]:+.3f} s, plots {s[2] - q[2]:+.3f} s; "
          f"server/SQLite: tracking {s[1] / q[1]:.2f}x, wall {s[0] / q[0]:.3f}x")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tracking", description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", action="store_true", help="a PostgreSQL-backed mlflow server against SQLite")
    parser.add_argument("--repeats", type=int, default=4)
    args, overrides = parser.parse_known_args()
    instrument()
    if args.server:
        server_against_sqlite(overrides or SERVER_DEFAULT, args.repeats)
    else:
        sqlite_share(overrides or DEFAULT)


if __name__ == "__main__":
    main()
