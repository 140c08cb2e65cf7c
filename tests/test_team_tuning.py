"""Tuning with several workers: two processes share one Optuna study in the team's PostgreSQL (the storage that
``python -m harness.server`` creates and prints) and one MLflow parent run on its tracking server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid

import pytest
from mlflow.tracking import MlflowClient

pytest.register_assert_rewrite("team_cluster")

pytest_plugins = ["team_cluster"]
pytestmark = pytest.mark.cluster

N_TRIALS = 8


def test_two_workers_share_one_study_and_one_parent_run(server, tmp_path):
    optuna = pytest.importorskip("optuna", reason="optuna missing: pip install '.[tune]'")
    (storage,) = re.findall(r"hydra\.sweeper\.storage=(\S+)", server.output)
    assert storage.startswith("postgresql+psycopg://") and storage.endswith("/optuna")
    study, experiment = f"shared-{uuid.uuid4().hex[:8]}", "team-tune"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR", "HARNESS_PARENT_RUN_ID")}
    workers = []
    for name in ("w1", "w2"):  # each worker in its own directory, as two SLURM jobs or two machines would be
        (tmp_path / name).mkdir()
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "harness", "-m", "experiment=tune_huber_delta", f"hydra.sweeper.n_trials={N_TRIALS}",
             f"hydra.sweeper.storage={storage}", f"hydra.sweeper.study_name={study}", "trainer.epochs=4",
             "trainer.progress=false", "trainer.threads=1", f"tracking.uri={server.uri}", f"tracking.experiment={experiment}"],
            cwd=tmp_path / name, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [w.communicate(timeout=600) for w in workers]
    heads = [[line for line in out.splitlines() if line.startswith(("sweep", "optuna"))] for out, _ in outputs]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, (heads, err[-3000:])
    ran = [int(re.search(r"this worker ran (\d+) trial", out).group(1)) for out, _ in outputs]
    assert sum(ran) == N_TRIALS and min(ran) >= 1, ran  # both did work, no trial twice

    trials = optuna.load_study(study_name=study, storage=storage).trials
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.number for t in complete) == list(range(N_TRIALS))
    assert all(t.user_attrs.get("harness") for t in trials if t.state != optuna.trial.TrialState.COMPLETE)  # surplus only

    client = MlflowClient(tracking_uri=server.uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`optuna.study` = '{study}'")
    (parent,) = runs
    children = client.search_runs([exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == N_TRIALS and all(r.info.status == "FINISHED" for r in children)
    # every trial is one run, with the trial's delta, and no two trials tried the same delta
    assert sorted(float(r.data.params["loss.delta"]) for r in children) == sorted(t.params["loss.delta"] for t in complete)
    assert len({t.params["loss.delta"] for t in complete}) == N_TRIALS
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.finished"] == str(N_TRIALS)
    assert len([k for k in parent.data.tags if k.startswith("sweep.worker/")]) == 2
    # the best trial is reported, and it is the best run's last validation RMSE
    best = min(complete, key=lambda t: t.value)
    assert parent.data.tags["optuna.best_trial"] == str(best.number)
    assert float(parent.data.tags["optuna.best.loss.delta"]) == best.params["loss.delta"]
    assert float(parent.data.tags["optuna.best_value"]) == pytest.approx(min(r.data.metrics["val/rmse"] for r in children))
    closing = [out for out, _ in outputs if "sweep: 8 of 8 jobs finished" in out]
    assert len(closing) >= 1 and all(f"best trial #{best.number}:" in out for out in closing)
