"""hydra/sweeper=optuna (harness/tuning.py): the search space read from Hydra's sweep syntax, a study kept in a
storage and tuned further by a second command under the same parent run, failed trials, and bad settings."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from harness import tuning
from test_sweeps import runs, sweep

optuna = pytest.importorskip("optuna", reason="optuna missing: pip install '.[tune]'")
D = optuna.distributions


def test_search_space_reads_hydra_sweep_syntax():
    space, fixed = tuning.search_space(
        {"loss.delta": "tag(log, interval(0.05, 20.0))", "optim.lr": "interval(0.001, 0.1)", "seed": "3"},
        ["loss.alpha=choice(0.25, 0.5)", "trainer.epochs=range(2, 11, 4)", "model.width=tag(int, log, interval(8, 64))",
         "optim.lr=0.01", "data.noise=range(0.5, 2.0, 0.5)"],
    )
    assert space == {
        "loss.delta": D.FloatDistribution(0.05, 20.0, log=True),
        "loss.alpha": D.CategoricalDistribution([0.25, 0.5]),
        "trainer.epochs": D.IntDistribution(2, 10, step=4),   # Hydra's range stops before its end: 2, 6, 10
        "model.width": D.IntDistribution(8, 64, log=True),
        "data.noise": D.FloatDistribution(0.5, 1.5, step=0.5),
    }
    assert fixed == ["seed=3", "optim.lr=0.01"]  # the command line's fixed value replaces the config's range


def test_a_stored_study_is_tuned_further_under_the_same_parent(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = ["experiment=tune_huber_delta", f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=again"]
    # two trials at a time, then the one left: no trial asked beyond n_trials
    first = sweep(tmp_path, *args, "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "this worker ran 3 trial(s); the study has 3 complete of 3" in first.stdout
    again = sweep(tmp_path, *args, "hydra.sweeper.n_trials=4")  # n_trials counts the study's trials: one more
    assert again.returncode == 0, again.stderr[-3000:]
    assert "this worker ran 1 trial(s); the study has 4 complete of 4" in again.stdout
    (parent,), children = runs(tmp_path, "tune_huber_delta")
    assert f"sweep parent run {parent.info.run_id} (" in first.stdout and f"{parent.info.run_id} (sweep-" in again.stdout
    assert ", joined)" in again.stdout
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.finished"] == "4"
    assert len(children) == 4 and {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    study = optuna.load_study(study_name="again", storage=storage)
    assert len(study.trials) == 4  # nothing surplus
    assert sorted(float(r.data.params["loss.delta"]) for r in children) == sorted(t.params["loss.delta"] for t in study.trials)
    assert float(parent.data.tags["optuna.best_value"]) == pytest.approx(study.best_value)
    assert study.best_value == pytest.approx(min(r.data.metrics["val/rmse"] for r in children))
    assert len([k for k in parent.data.tags if k.startswith("sweep.worker/")]) == 2
    results = list(tmp_path.glob("multirun/*/*/optimization_results.yaml"))
    assert len(results) == 2 and all(f"best_value: {study.best_value}"[:16] in r.read_text() for r in results)


def test_a_diverging_trial_is_a_failed_trial_and_the_study_goes_on(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    # SGD at lr 1000 diverges in its first steps, at 0.01 it does not
    proc = sweep(tmp_path, "experiment=tune_huber_delta", "loss=mse", "optim=sgd", "~hydra.sweeper.params",
                 "optim.lr=choice(1000.0, 0.01)", "hydra.sweeper.n_trials=4", "hydra.sweeper.sampler.seed=1",
                 f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=diverge")
    study = optuna.load_study(study_name="diverge", storage=storage)
    states = {t.params["optim.lr"]: t.state.name for t in study.trials}
    assert states == {1000.0: "FAIL", 0.01: "COMPLETE"}, states
    assert len(study.trials) == 4 and study.best_params == {"optim.lr": 0.01}
    assert proc.returncode == 1  # the sweep reports its failed runs, as every sweep does
    (parent,), children = runs(tmp_path, "tune_huber_delta")
    failed = [r for r in children if r.info.status == "FAILED"]
    assert failed and all(r.data.params["optim.lr"] == "1000.0" for r in failed)
    assert f"sweep: {4 - len(failed)} of 4 jobs finished" in proc.stdout
    assert parent.data.tags["optuna.best.optim.lr"] == "0.01"


@pytest.mark.parametrize(("args", "message"), [
    (["hydra/sweeper=optuna"], "hydra/sweeper=optuna has nothing to tune"),
    (["hydra/sweeper=optuna", "loss.delta=glob(*)"], "hydra/sweeper=optuna: loss.delta=glob(*) is not a search space Optuna can sample"),
    (["experiment=tune_huber_delta", "hydra.sweeper.direction=down"],
     "hydra.sweeper.direction must be one of minimize, maximize, got 'down'"),
    (["experiment=tune_huber_delta", "hydra.sweeper.storage=sqlite:///o.db", "hydra.sweeper.study_name=null"],
     "hydra.sweeper.study_name is needed with hydra.sweeper.storage"),
])
def test_bad_settings_are_one_line_before_any_run(tmp_path, args, message):
    proc = sweep(tmp_path, "loss=huber", *args)
    assert proc.returncode == 2 and f"error: {message}" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "mlflow.db").exists()
