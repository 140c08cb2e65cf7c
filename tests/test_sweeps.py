"""Sweeps (-m) through real Hydra launchers into real SQLite stores: one parent run per sweep, nothing lost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

FAST = ["trainer.progress=false", "trainer.epochs=3", "tracking.log_plots=false"]


def sweep(cwd: Path, *overrides: str, timeout: int = 400) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HARNESS_PARENT_RUN_ID")}
    return subprocess.run([sys.executable, "-m", "harness", "-m", *overrides, *FAST], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def runs(cwd: Path, experiment: str = "loss-harness"):
    client = MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    all_runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in all_runs if r.data.tags.get("sweep") == "parent"]
    return parents, [r for r in all_runs if r.data.tags.get("sweep") != "parent"]


def test_parallel_joblib_sweep_into_a_fresh_store_loses_nothing(tmp_path):
    proc = sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "loss=mse,mae,huber,log_cosh", "seed=0,1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (parent,), children = runs(tmp_path)
    assert len(children) == 8
    assert all(r.info.status == "FINISHED" for r in children)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert parent.info.status == "FINISHED"
    assert "loss=mse,mae,huber,log_cosh" in parent.data.tags["sweep.overrides"]
    assert parent.data.tags["sweep.finished"] == "8" and parent.data.tags["sweep.failed"] == "0"
    assert {(r.data.tags["loss"], r.data.tags["seed"]) for r in children} == {
        (loss, seed) for loss in ("mse", "mae", "huber", "log_cosh") for seed in ("0", "1")
    }
    assert "sweep: 8 of 8 jobs finished" in proc.stdout


def test_a_failing_job_does_not_stop_the_sweep(tmp_path):
    proc = sweep(tmp_path, "loss=mse,huber", "data.outlier_scale=10,1e30")
    assert proc.returncode == 1
    (parent,), children = runs(tmp_path)
    statuses = sorted((r.data.tags["loss"], r.data.params["data.outlier_scale"], r.info.status) for r in children)
    assert statuses == [("huber", "10", "FINISHED"), ("huber", "1e+30", "FINISHED"),
                        ("mse", "10", "FINISHED"), ("mse", "1e+30", "FAILED")]
    assert parent.info.status == "FAILED" and parent.data.tags["sweep.failed"] == "1"
    assert "sweep: 3 of 4 jobs finished" in proc.stdout and "FAILED: mse-outliers-s0 (NonFiniteLoss" in proc.stdout


def test_a_bad_value_anywhere_in_the_sweep_stops_it_before_anything_starts(tmp_path):
    proc = sweep(tmp_path, "loss=mse,hubber,huber", "loss.delta=1,-2")
    assert proc.returncode == 2
    assert "nothing was started" in proc.stderr
    assert "loss=hubber is not an option of group 'loss'; did you mean 'huber'?" in proc.stderr and "delta must be a number > 0, got -2" in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_submitit_local_launcher(tmp_path):
    proc = sweep(tmp_path, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "loss=mae,huber")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (parent,), children = runs(tmp_path)
    assert sorted(r.data.tags["loss"] for r in children) == ["huber", "mae"]
    assert all(r.info.status == "FINISHED" and r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)


def test_optuna_preset_tunes_huber_delta(tmp_path):
    proc = sweep(tmp_path, "experiment=tune_huber_delta", "hydra.sweeper.n_trials=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (parent,), children = runs(tmp_path, "tune_huber_delta")
    deltas = {float(r.data.params["loss.delta"]) for r in children}
    assert len(children) == 3 and len(deltas) == 3 and all(0.05 <= d <= 20 for d in deltas)
    (result,) = list(tmp_path.glob("multirun/*/*/optimization_results.yaml"))
    text = result.read_text()
    assert "loss.delta" in text and "best_value" in text
    best = min(r.data.metrics["val/rmse"] for r in children)
    assert f"best_value: {best}"[:16] in text
