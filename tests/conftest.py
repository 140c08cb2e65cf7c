"""Shared fixtures: compose the real Hydra config, and a fresh SQLite store per test. Under pytest-xdist (the
default ``-n``), tests are scheduled by file, and the cluster files (tests/test_team_*.py) as one unit, so one
worker starts the session's PostgreSQL, MLflow server and SLURM cluster (tests/team_cluster.py) and runs them all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):  # workers share the cores: OpenMP threads sleep instead of spinning
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from harness.__main__ import CONF_DIR  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CLUSTER_FILES = "tests/test_team_"  # the files whose tests share tests/team_cluster.py's session daemons


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile``, with every cluster file in one unit: two workers would start two PostgreSQL clusters,
    servers and SLURM clusters, and two SLURM clusters on one host clash."""
    from xdist.scheduler import LoadFileScheduling

    class ByFile(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = super()._split_scope(nodeid)
            return CLUSTER_FILES if file.startswith(CLUSTER_FILES) else file

    return ByFile(config, log)


def pytest_collection_modifyitems(config, items):
    """The cluster files first (their unit is the suite's longest, about 8 minutes), so that it does not start last
    and leave the other workers idle at the end."""
    items.sort(key=lambda item: not item.nodeid.startswith(CLUSTER_FILES))


def harness_cli(cwd: Path, *args: str, pythonpath: Path | None = None, timeout: int = 300, **kwargs) -> subprocess.CompletedProcess:
    """``python -m harness ARGS`` in ``cwd`` as a user would run it: without this environment's tracking URI, Hydra's
    full-error switch or a sweep's parent id; ``pythonpath`` for a user's package."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR", "HARNESS_PARENT_RUN_ID")}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A tracking URI for a fresh SQLite store inside the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def make_cfg(store: str):
    """``make_cfg("loss=huber", ...)`` composes conf/ with overrides, progress bar off and the test's store."""

    def make(*overrides: str) -> DictConfig:
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            return compose(
                "config",
                overrides=["trainer.progress=false", f"tracking.uri={store}", "tracking.log_plots=false", *overrides],
            )

    return make
