"""``pip install .`` (not editable) into a fresh virtual environment, then the console script in an empty
directory: the wheel ships the config tree, and ``losses`` imports on its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO

# what a wheel build does not read from the checkout's top level: environments, VCS data, datasets, build and run outputs
TOP_SKIP = {".venv", ".git", ".gl", ".pytest_cache", "build", "data", "experiments", "mlruns", "mlartifacts", "outputs",
            "multirun", "comparison", "mlflow.db", "mlflow.db.lock", ".mlflow.db.lock"}


def _skip(directory: str, names: list[str]) -> set[str]:
    top = Path(directory) == REPO
    return {n for n in names if (top and n in TOP_SKIP) or n == "__pycache__" or n.endswith(".egg-info")}


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv holding only our wheel; the heavy dependencies (torch, mlflow, ...) are reused from the test
    environment through a ``.pth`` line rather than downloaded again. That path's own ``.pth`` files (the editable
    install of this checkout) are not processed, so ``harness`` can only come from the wheel."""
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"  # a private copy: the build writes build/ and *.egg-info beside the sources
    shutil.copytree(REPO, source, ignore=_skip)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist")],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp / "dist").glob("loss_harness-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True, timeout=300)
    python = tmp / "venv" / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True, timeout=300)
    return tmp / "venv"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PYTHONPATH", "VIRTUAL_ENV")}


def test_installed_package_runs_the_main_job_in_an_empty_directory(venv, tmp_path):
    wheel_conf = sorted(p.relative_to(next(venv.glob("lib/python*/site-packages/harness/conf"))).as_posix()
                        for p in venv.glob("lib/python*/site-packages/harness/conf/**/*.yaml"))
    assert wheel_conf == sorted(p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml"))
    proc = subprocess.run([str(venv / "bin" / "loss-harness"), "loss=huber", "data=outliers", "trainer.epochs=5", "trainer.progress=false"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "run huber-outliers-s0 finished" in proc.stdout and "test/rmse" in proc.stdout
    assert (tmp_path / "mlflow.db").is_file()
    help_text = subprocess.run([str(venv / "bin" / "loss-harness"), "--help"], cwd=tmp_path, env=_env(), capture_output=True, text=True).stdout
    assert "loss: " in help_text and "huber" in help_text  # Hydra lists the packaged config groups


def test_installed_modules_come_from_the_wheel_and_losses_imports_alone(venv, tmp_path):
    code = "import sys, losses; assert 'harness' not in sys.modules; import harness.run; print(losses.__file__); print(harness.__file__)"
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    for line in out.stdout.split():
        assert str(venv) in line and str(REPO) not in line


def test_installed_package_tunes_with_its_optuna_sweeper(venv, tmp_path):
    """The sweeper ships as a Hydra plugin (``hydra_plugins.harness_optuna_sweeper``) in the wheel."""
    proc = subprocess.run([str(venv / "bin" / "loss-harness"), "-m", "experiment=tune_huber_delta", "hydra.sweeper.n_trials=2",
                           "trainer.epochs=2", "trainer.progress=false", "tracking.log_plots=false"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "this worker ran 2 trial(s)" in proc.stdout and "sweep: 2 of 2 jobs finished" in proc.stdout
    code = "import hydra_plugins.harness_optuna_sweeper.optuna_sweeper as m; print(m.__file__)"
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True)
    assert str(venv) in out.stdout, out.stderr
