"""The worked examples in ``examples/`` run end to end as their READMEs say, at a reduced size, in a copy of the
example's folder (the README's commands run from there, with the folder on ``PYTHONPATH`` for the user's package)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from conftest import REPO

DIABETES = REPO / "examples" / "diabetes"
GENERATED = shutil.ignore_patterns("diabetes.csv", "mlflow.db*", ".mlflow.db*", "mlruns", "outputs", "multirun", "comparison", "__pycache__")


def run(cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python ARGS`` in ``cwd`` with ``cwd`` on ``PYTHONPATH``, MLflow's default store (``cwd/mlflow.db``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HARNESS_PARENT_RUN_ID")}
    env["PYTHONPATH"] = str(cwd)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def table_rows(stdout: str) -> list[list[str]]:
    """The body rows of the first markdown table in ``stdout``, as lists of cells."""
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_the_diabetes_example_runs_end_to_end(tmp_path):
    example = tmp_path / "diabetes"
    shutil.copytree(DIABETES, example, ignore=GENERATED)

    export = run(example, "export_data.py")
    assert export.returncode == 0, export.stderr[-2000:]
    frame = pd.read_csv(example / "diabetes.csv")
    assert len(frame) == 442 and "target" in frame.columns and frame.shape[1] == 11

    sweep = run(example, "-m", "harness", "-m", "--config-dir", "conf", "experiment=diabetes", "trainer.epochs=5",
                "tracking.log_plots=false", "hydra.sweeper.params.seed='0,1'")
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert "sweep: 6 of 6 jobs finished" in sweep.stdout
    client = MlflowClient(tracking_uri=f"sqlite:///{example / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("diabetes")
    all_runs = client.search_runs([experiment.experiment_id], max_results=100)
    (parent,) = [r for r in all_runs if r.data.tags.get("sweep") == "parent"]
    children = [r for r in all_runs if r.data.tags.get("sweep") != "parent"]
    assert sorted((r.data.tags["loss"], r.data.tags["seed"]) for r in children) == [
        (loss, seed) for loss in ("TukeyBiweight", "huber", "mse") for seed in ("0", "1")
    ]
    assert all(r.info.status == "FINISHED" for r in children) and parent.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert {r.data.tags["data"] for r in children} == {"table"}
    tukey = next(r for r in children if r.data.tags["loss"] == "TukeyBiweight")
    assert tukey.data.params["loss.c"] == "4.685"

    compare = run(example, "-m", "harness.compare", "--experiment", "diabetes", "--metric", "test/rmse", "--out", "comparison")
    assert compare.returncode == 0, compare.stderr[-2000:]
    rows = table_rows(compare.stdout)
    assert sorted(row[0] for row in rows) == ["TukeyBiweight", "huber", "mse"], compare.stdout
    assert all(row[2] == "2" and row[3] == "0" for row in rows), compare.stdout  # 2 seeds each, none failed
    assert (example / "comparison" / "comparison.md").exists() and (example / "comparison" / "bars.png").exists()
