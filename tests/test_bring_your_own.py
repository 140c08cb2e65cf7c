"""A user's own loss, model and config dir, from a package outside the harness (``tests/user_pkg``), through the
real CLI and a real SQLite store; and the provenance of what each run trained on."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import REPO, harness_cli
from fixtures import write_idx_dataset

USER = REPO / "tests" / "user_pkg"
FAST = ["trainer.epochs=10", "trainer.progress=false", "tracking.log_plots=false"]


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return harness_cli(cwd, *args, pythonpath=USER)


def runs(cwd: Path, experiment: str = "loss-harness") -> list:
    db = cwd / "mlflow.db"
    if not db.exists():
        return []
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def test_a_users_loss_module_by_target_equals_the_builtin_it_reimplements(tmp_path):
    ours = cli(tmp_path, "data=outliers", "loss._target_=my_pkg.losses.SquaredError", *FAST)
    assert ours.returncode == 0, ours.stderr[-2000:]
    builtin = cli(tmp_path, "data=outliers", "loss=mse", *FAST)
    assert builtin.returncode == 0, builtin.stderr[-2000:]
    by_loss = {r.data.tags["loss"]: r for r in runs(tmp_path)}
    assert set(by_loss) == {"SquaredError", "mse"}
    assert by_loss["SquaredError"].info.run_name == "SquaredError-outliers-s0"
    for metric in ("test/rmse", "test/mae"):
        assert by_loss["SquaredError"].data.metrics[metric] == pytest.approx(by_loss["mse"].data.metrics[metric], rel=1e-5)


def test_a_users_loss_class_gets_class_weights_in_its_own_form(tmp_path):
    """torch's BCEWithLogitsLoss takes pos_weight: balanced weights reach it as the built-in bce gets them."""
    common = ["data=imbalanced", "data.class_weights=balanced", *FAST]
    ours = cli(tmp_path, *common, "loss._target_=torch.nn.BCEWithLogitsLoss")
    assert ours.returncode == 0, ours.stderr[-2000:]
    builtin = cli(tmp_path, *common, "loss=bce")
    assert builtin.returncode == 0, builtin.stderr[-2000:]
    by_loss = {r.data.tags["loss"]: r for r in runs(tmp_path)}
    assert by_loss["BCEWithLogitsLoss"].data.params["class_weights.form"] == "pos_weight"
    for metric in ("test/pr_auc", "test/log_loss"):
        assert by_loss["BCEWithLogitsLoss"].data.metrics[metric] == pytest.approx(by_loss["bce"].data.metrics[metric], rel=1e-4)


def test_a_count_loss_on_standardised_table_targets_is_refused_with_the_fix(tmp_path):
    from sklearn.datasets import load_diabetes

    load_diabetes(as_frame=True, scaled=False).frame.to_csv(tmp_path / "d.csv", index=False)
    table = ["data=table", "data.path=d.csv", "data.target=target", "loss=poisson", *FAST]
    refused = cli(tmp_path, *table)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == ("error: loss=poisson needs targets >= 0 in their own units, but "
                                                       "data=table trains on standardised targets: set data.standardize_target=false")
    raw = cli(tmp_path, *table, "data.standardize_target=false")
    assert raw.returncode == 0, raw.stderr[-2000:]
    (run,) = runs(tmp_path)
    assert run.info.status == "FINISHED"


def test_a_users_function_loss_gets_its_keyword_arguments_from_the_config(tmp_path):
    proc = cli(tmp_path, "data=outliers", "loss._target_=my_pkg.losses.absolute_error", "+loss.power=1.0", *FAST)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = runs(tmp_path)
    assert run.data.tags["loss"] == "absolute_error" and run.data.params["loss.power"] == "1.0"
    assert run.data.metrics["test/rmse"] < 1.5  # MAE is robust to the 10% outliers (noise sd 1; MSE gets ~3)


def test_a_users_model_receives_input_shape_and_num_outputs(tmp_path):
    """data=imbalanced picks model=mlp; a _target_ on top keeps mlp's keys in the group: the ones the user's class
    takes (hidden) reach it, the others (activation, dropout, head) are left out with a note."""
    proc = cli(tmp_path, "data=imbalanced", "loss=bce", "model._target_=my_pkg.models.TinyNet", "model.hidden=8", *FAST)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "note: model._target_=my_pkg.models.TinyNet takes no activation, dropout, head; left out" in proc.stderr
    (run,) = runs(tmp_path)
    assert run.data.tags["model"] == "TinyNet" and run.data.params["model.hidden"] == "8"
    assert run.data.metrics["test/roc_auc"] > 0.8


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["loss._target_=my_pkg.losses.NoSuchLoss"], "loss._target_='my_pkg.losses.NoSuchLoss' does not import: module 'my_pkg.losses' has no attribute 'NoSuchLoss'"),
        (["loss._target_=nosuch_pkg.Loss"], "loss._target_='nosuch_pkg.Loss' does not import: ModuleNotFoundError: No module named 'nosuch_pkg'"),
        (["model._target_=my_pkg.nomodels.Net"], "model._target_='my_pkg.nomodels.Net' does not import"),
        (["loss._target_=my_pkg.losses.per_example"], "loss=per_example must return a scalar tensor; it returned (2,)"),
        (["loss._target_=my_pkg.losses.detached"], "loss=detached returned a tensor without grad"),
        (["model._target_=my_pkg.models.WrongWidth"], "model WrongWidth returned output of shape (2, 3) for a batch of 2; the loss needs (2, 1)"),
        (["loss._target_=my_pkg.losses.SquaredError", "loss.target=nonsense"], "loss.target='nonsense' is not allowed: loss.target must be one of"),
        (["loss._target_=my_pkg.losses.SquaredError", "loss.target=index"], "loss.target=index is not allowed for data=outliers (task 'regression'): the task gives targets as one of ['float']"),
        (["loss._target_=my_pkg.losses.SquaredError", "+loss.scale=-1"], "loss._target_=SquaredError: its arguments {'scale': -1} do not fit: ValueError: scale must be > 0"),
        (["imports=[nosuch_module]"], "imports: module 'nosuch_module' does not import: ModuleNotFoundError"),
    ],
)
def test_a_broken_user_loss_or_model_is_refused_in_one_line_before_any_run(tmp_path, overrides, message):
    proc = cli(tmp_path, "data=outliers", *overrides, *FAST)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert runs(tmp_path) == []


def test_a_users_config_dir_and_registered_loss_sweep_with_the_builtins(tmp_path):
    proc = cli(tmp_path, "-m", f"--config-dir={USER / 'conf'}", "experiment=mine")
    assert proc.returncode == 0, proc.stderr[-3000:]
    children = [r for r in runs(tmp_path, "mine") if r.data.tags.get("sweep") != "parent"]
    assert sorted(r.data.tags["loss"] for r in children) == ["SquaredError"] * 2 + ["huber"] * 2 + ["pseudo_l1"] * 2
    assert all(r.info.status == "FINISHED" for r in children)
    assert len({r.data.tags["mlflow.parentRunId"] for r in children}) == 1
    rmse = {r.data.tags["loss"]: r.data.metrics["test/rmse"] for r in children if r.data.tags["seed"] == "0"}
    assert rmse["pseudo_l1"] < 1.3 < rmse["SquaredError"]  # the robust surrogate resists the outliers, squared error does not


@pytest.mark.parametrize("loss", ["huber", "pseudo_l1"])
def test_a_dataset_registered_by_a_users_module_runs_from_their_config_dir(tmp_path, loss):
    """The dataset's YAML imports its module, the registered loss's YAML its own: both imports apply."""
    proc = cli(tmp_path, f"--config-dir={USER / 'conf'}", "data=sine", f"loss={loss}", "trainer.progress=false", "tracking.log_plots=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = runs(tmp_path)
    assert run.data.tags["data"] == "sine" and run.data.tags["loss"] == loss and run.data.tags["model"] == "mlp"
    assert run.data.metrics["test/rmse"] < 0.2  # noise sd 0.1; sin itself has sd ~0.7 on [-3, 3]


def test_imports_given_as_one_name_on_the_command_line(tmp_path):
    proc = cli(tmp_path, "data=outliers", "imports=my_pkg.registered", "loss.name=pseudo_l1", *FAST)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = runs(tmp_path)
    assert run.data.tags["loss"] == "pseudo_l1"


def test_each_run_records_its_data_as_an_mlflow_dataset_input(tmp_path):
    proc = cli(tmp_path, "data=outliers", "trainer.epochs=2", "trainer.progress=false", "tracking.log_plots=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = cli(tmp_path, "data=outliers", "trainer.epochs=2", "trainer.progress=false", "tracking.log_plots=false", "seed=1")
    assert again.returncode == 0
    first, second = sorted(runs(tmp_path), key=lambda r: r.data.tags["seed"])
    (inp,) = first.inputs.dataset_inputs
    assert inp.dataset.name == "outliers" and inp.tags[0].value == "train"
    assert json.loads(inp.dataset.profile) == {"train": 1000, "val": 500, "test": 1000, "input_shape": [10]}
    assert "generated from seed 0" in json.loads(inp.dataset.source)["uri"]
    assert first.data.tags["data.digest"] == inp.dataset.digest != second.data.tags["data.digest"]  # other seed, other data


def test_a_subset_standing_in_for_the_real_dataset_is_said_and_tagged(tmp_path):
    write_idx_dataset(tmp_path / "data" / "MNIST" / "raw")
    proc = cli(tmp_path, "data=mnist", "data.download=false", "trainer.epochs=1", "trainer.progress=false", "tracking.log_plots=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = runs(tmp_path)
    substitute = run.data.tags["data.substitute"]
    assert "stand in for the official 60,000 / 10,000" in substitute
    assert f"note: data=mnist: {substitute}" in proc.stderr
    (inp,) = run.inputs.dataset_inputs
    profile = json.loads(inp.dataset.profile)
    assert profile["num_classes"] == 10 and sum(profile["class_counts"]) == profile["train"]


def test_a_config_dir_option_named_like_a_builtin_one_is_named_in_a_warning(tmp_path):
    """Hydra composes the built-in option for a same-named file of a --config-dir, ignoring the user's without a
    word; the harness names each such file before the run."""
    (tmp_path / "conf" / "loss").mkdir(parents=True)
    (tmp_path / "conf" / "loss" / "huber.yaml").write_text("name: huber\ndelta: 7.5\n")
    (tmp_path / "conf" / "loss" / "my_huber.yaml").write_text("name: huber\ndelta: 7.5\n")
    done = harness_cli(tmp_path, "--config-dir", "conf", "data=outliers", "loss=huber", "--cfg", "job")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("warning:") == 1
    assert "loss/huber.yaml has the name of a built-in option, and Hydra uses the built-in one; rename yours (e.g. loss/my_huber.yaml)" in done.stderr
    assert "delta: 1.0" in done.stdout  # the built-in, as the warning says
    mine = harness_cli(tmp_path, "--config-dir", "conf", "data=outliers", "loss=my_huber", "--cfg", "job")
    assert "warning:" in mine.stderr and "delta: 7.5" in mine.stdout  # the renamed one is used
