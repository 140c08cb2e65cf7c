"""The real CLI in a fresh directory, read back from the SQLite store it created there."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import REPO, harness_cli


def run_cli(cwd: Path, *overrides: str, timeout: int = 180) -> subprocess.CompletedProcess:
    return harness_cli(cwd, *overrides, timeout=timeout)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cli")
    proc = run_cli(cwd, "loss=huber", "data=outliers", "trainer.epochs=5", "seed=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd, proc


def test_store_is_mlflow_default_in_working_directory_and_no_chdir(finished_run):
    cwd, proc = finished_run
    assert (cwd / "mlflow.db").is_file()
    assert not (REPO / "conf" / "mlflow.db").exists()
    assert "mlflow ui" in proc.stdout


def test_run_is_complete_in_the_store(finished_run):
    cwd, proc = finished_run
    client = MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("loss-harness")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "huber-outliers-s3"
    assert run.info.run_id in proc.stdout
    tags = run.data.tags
    assert (tags["loss"], tags["data"], tags["model"], tags["seed"]) == ("huber", "outliers", "linear", "3")
    assert len(tags["git_sha"]) == 40 or tags["git_sha"] == "unknown"
    params = run.data.params
    assert params["loss.delta"] == "1.0" and params["data.outlier_fraction"] == "0.1"
    assert params["trainer.epochs"] == "5" and params["optim.name"] == "adam" and params["seed"] == "3"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in history] == [1, 2, 3, 4, 5]
    assert len(client.get_metric_history(run.info.run_id, "val/rmse")) == 5
    metrics = run.data.metrics
    assert {"test/rmse", "test/mae", "test/coef_error"} <= set(metrics)
    assert 0.9 < metrics["test/rmse"] < 1.5  # 5 epochs of Huber: near the noise level (1.0)
    assert f"test/rmse       {metrics['test/rmse']:.4f}" in proc.stdout
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "config.yaml" in artifacts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"plots/learning_curves.png", "plots/regression_fit.png"}
    config = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(cwd))).read_text()
    assert "delta: 1.0" in config and "name: huber" in config


def test_bad_value_fails_before_anything_is_created(tmp_path):
    proc = run_cli(tmp_path, "loss=huber", "loss.delta=-1")
    assert proc.returncode == 2
    assert "loss 'huber': delta must be a number > 0, got -1" in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_unknown_loss_names_the_closest_and_where_the_list_is(tmp_path):
    proc = run_cli(tmp_path, "loss=hubber")
    assert proc.returncode == 2
    assert "did you mean 'huber'?" in proc.stderr and "losses.available()" in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()
