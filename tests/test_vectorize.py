"""Stacked training (``trainer.vectorize=true``, harness/vectorize.py): every member's per-epoch and test metrics
equal those of the same job run alone, a member that fails fails alone, and a sweep records each member as its own
MLflow run.

Tolerance: relative 1e-5 (absolute 1e-7) on every logged number (batched matrix products add in another order than
one member's; observed differences are ~1e-7). The U-Net under Adam is the exception, and its own run is too: its
convolution biases sit before BatchNorm, so their true gradient is zero and what Adam sees is rounding noise, which
it scales to learning-rate-sized steps that BatchNorm's running means then follow; changing only ``trainer.threads``
moves its metrics by ~0.3% after two epochs, and stacking by a few percent. So the U-Net is held to 1e-5 under SGD
(which does not rescale that noise) and, under Adam, its first step's gradients to 1e-3 of each tensor's largest
entry plus 1e-6 (a CI machine's kernels gave 1.2e-4). Longer non-convex runs can amplify rounding too
(experiments/imbalanced_binary/README.md measures it); the cases here are short on purpose.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from fixtures import write_idx_dataset
from harness.evaluation import evaluate
from harness.grad_share import GradShare, StackedGradShare
from harness.run import prepare
from harness.stack_jobs import plan
from harness.train import BestEpoch, NonFiniteLoss, fit
from harness.vectorize import Member, NotStackable, _loss_function, check_members, fit_stacked, loss_form, refusal, stack_key

RTOL, ATOL = 1e-5, 1e-7


def alone_and_stacked(make_cfg, overrides: list[str], seeds=(0, 1, 2), per_seed=None):
    """Each seed's job run alone (history, test metrics, best epoch, or its NonFiniteLoss) and the same jobs stacked
    (their Members, after fit_stacked), plus the stacked members' loss form."""
    per_seed = per_seed or {}
    cfgs = [make_cfg(*overrides, f"seed={s}", *per_seed.get(s, [])) for s in seeds]
    alone = []
    for cfg in cfgs:
        p = prepare(cfg)
        best = BestEpoch(p.task.monitor, p.task.metrics[p.task.monitor])
        try:
            history = fit(p.model, p.criterion, p.data, cfg, best=best)
        except NonFiniteLoss as err:
            alone.append(err)
            continue
        test = p.task.test_metrics(evaluate(p.model, p.data.test.x, p.data.test.y), p.host, p.model)
        alone.append((history, test, best.epoch))
    built = [prepare(cfg) for cfg in cfgs]
    members = [Member(p.model, p.criterion, p.data, int(c.seed), best=BestEpoch(p.task.monitor, p.task.metrics[p.task.monitor]))
               for p, c in zip(built, cfgs)]
    form = loss_form(_loss_function(members))
    fit_stacked(members, cfgs[0])
    stacked = []
    for m, p in zip(members, built):
        test = p.task.test_metrics(evaluate(p.model, p.data.test.x, p.data.test.y), p.host, p.model) if m.error is None else None
        stacked.append((m, test))
    return alone, stacked, form


def assert_same(alone, stacked, rtol=RTOL, atol=ATOL):
    for (history, test, best_epoch), (member, stacked_test) in zip(alone, stacked):
        assert member.error is None
        assert len(member.history) == len(history)
        for mine, theirs in zip(member.history, history):
            assert mine.keys() == theirs.keys()
            for key in theirs:
                assert math.isclose(mine[key], theirs[key], rel_tol=rtol, abs_tol=atol), (key, mine[key], theirs[key])
        assert stacked_test.keys() == test.keys()
        for key in test:
            assert math.isclose(stacked_test[key], test[key], rel_tol=rtol, abs_tol=atol), (key, stacked_test[key], test[key])
        assert member.best.epoch == best_epoch


CASES = {
    # the loss's per-element terms averaged per member: one call for all members
    "linear-huber-grad-share": (["data=outliers", "loss=huber", "trainer.epochs=6", "trainer.grad_share=true"], "flat"),
    # a per-batch statistic (the MAD scale): the flat form is refused on the probe batches, vmap gives each its own
    "linear-huber-mad": (["data=outliers", "variant=huber_mad", "trainer.epochs=4"], "vmapped"),
    # class weights (stratified splits: the same counts, so the same pos_weight for every seed)
    "mlp-bce-balanced": (["data=imbalanced", "data.n_samples=3000", "data.class_weights=balanced", "trainer.epochs=3",
                          "trainer.grad_share=true"], "flat"),
    # learned loss parameters: each member's own loss module, optimised with the stack
    "linear-barron-adaptive": (["data=outliers", "loss=barron_adaptive", "trainer.epochs=4"], "looped"),
    # cosine schedule, SGD with momentum and weight decay
    "mlp-sgd-cosine": (["data=outliers", "model=mlp", "optim=sgd", "optim.lr=0.01", "optim.momentum=0.9",
                        "optim.weight_decay=0.001", "optim.scheduler=cosine", "trainer.epochs=4"], "flat"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_member_equals_its_run_alone(make_cfg, case):
    overrides, form = CASES[case]
    alone, stacked, used = alone_and_stacked(make_cfg, overrides)
    assert used == form
    assert_same(alone, stacked)


def test_members_with_different_loss_settings_each_train_with_their_own(make_cfg):
    alone, stacked, form = alone_and_stacked(
        make_cfg, ["data=outliers", "loss=huber", "trainer.epochs=4"], per_seed={0: ["loss.delta=0.3"], 1: ["loss.delta=3.0"]}, seeds=(0, 1)
    )
    assert form == "looped"
    assert_same(alone, stacked)
    assert stacked[0][1]["rmse"] != stacked[1][1]["rmse"]


def test_members_whose_class_weights_differ_each_get_their_own(make_cfg):
    # another prevalence per member, so another pos_weight: one vmapped call over the stacked loss buffers
    alone, stacked, form = alone_and_stacked(
        make_cfg, ["data=imbalanced", "data.n_samples=3000", "data.class_weights=balanced", "trainer.epochs=3"],
        seeds=(0, 1), per_seed={0: ["data.positive_fraction=0.05"], 1: ["data.positive_fraction=0.2"]},
    )
    assert form == "vmapped"
    assert_same(alone, stacked)
    assert stacked[0][0].criterion.weight_arg != stacked[1][0].criterion.weight_arg


def test_cnn_on_mnist_files_equals_its_runs_alone(make_cfg, tmp_path):
    write_idx_dataset(tmp_path / "MNIST" / "raw", n_train=300, n_test=100)
    alone, stacked, form = alone_and_stacked(
        make_cfg, ["data=mnist", f"data.root={tmp_path}", "data.download=false", "data.label_noise=0.2",
                   "trainer.epochs=2", "trainer.grad_share=true", "trainer.batch_size=32"], seeds=(0, 1)
    )
    assert form == "flat"
    assert_same(alone, stacked)


def test_unet_under_sgd_equals_its_runs_alone(make_cfg):
    alone, stacked, form = alone_and_stacked(
        make_cfg, ["data=segmentation", "data.n_train=48", "data.n_val=16", "data.n_test=16", "trainer.epochs=2", "optim=sgd",
                   "optim.lr=0.05", "trainer.grad_share=true"], seeds=(0, 1),
    )
    assert form == "vmapped"  # dice is a ratio over the batch, not a mean of per-pixel terms
    assert_same(alone, stacked)


def test_unet_first_step_gradients_equal_its_own(make_cfg):
    from torch.func import stack_module_state

    from harness.vectorize import stacked_forward

    seg = ["data=segmentation", "data.n_train=48", "data.n_val=16", "data.n_test=16"]
    built = [prepare(make_cfg(*seg, f"seed={s}")) for s in (0, 1)]
    members = [Member(p.model, p.criterion, p.data, s) for s, p in enumerate(built)]
    params, buffers = stack_module_state([p.model for p in built])
    x = torch.stack([p.data.train.x[:8] for p in built])
    y = torch.stack([p.data.train.y[:8] for p in built])
    idx = torch.arange(8).expand(2, -1)
    _loss_function(members)(stacked_forward(built[0].model)(params, buffers, x), y, idx).sum().backward()
    for i, p in enumerate(built):
        p.criterion(p.model(x[i]), y[i], idx[i]).backward()
        for (name, param), stacked in zip(p.model.named_parameters(), params.values()):
            # each weight gradient sums B*H*W products, added in another order when stacked: rounding of up to
            # ~1e-4 of the tensor's largest entry on some CPUs' kernels; a wrong member or a missed term is off by ~1
            error = (param.grad - stacked.grad[i]).abs().max()
            assert error <= 1e-3 * param.grad.abs().max() + 1e-6, (name, float(error))
        for name, buffer in p.model.named_buffers():  # BatchNorm's running statistics, updated in the stacked copy
            assert torch.allclose(buffer.float(), buffers[name][i].float(), rtol=1e-5, atol=1e-6), name


def test_a_member_whose_loss_overflows_fails_alone_at_the_step_it_would_alone(make_cfg):
    # member 1's outliers are 1e30 sd away: its squared error overflows float32 at its first batch holding one
    alone, stacked, form = alone_and_stacked(
        make_cfg, ["data=outliers", "loss=mse", "trainer.epochs=3"], seeds=(0, 1, 2), per_seed={1: ["data.outlier_scale=1e30"]}
    )
    assert isinstance(alone[1], NonFiniteLoss)
    member, test = stacked[1]
    assert isinstance(member.error, NonFiniteLoss) and test is None
    assert (member.error.epoch, member.error.step, member.error.in_gradients) == (alone[1].epoch, alone[1].step, alone[1].in_gradients)
    assert member.history == []
    assert_same([alone[0], alone[2]], [stacked[0], stacked[2]])


def test_stacked_grad_share_equals_each_members_own():
    torch.manual_seed(0)
    members, n, batch = 3, 20, 6
    for shape in [(n,), (n, 4, 4)]:  # per-example groups; per-pixel groups (a [B, C, H, W] output, channel-summed)
        groups = []
        for _ in range(members):
            mask = torch.rand(shape) < 0.3
            groups.append({"a": mask, "b": ~mask})
        stacked = StackedGradShare(groups, torch.device("cpu"))
        alone = [GradShare(g) for g in groups]
        for step in range(3):
            idx = torch.stack([torch.randperm(n)[:batch] for _ in range(members)])
            grad = torch.randn(members, batch, 2, *shape[1:])
            if step == 1:
                grad[2, 0, 0] = float("inf")  # member 2's step is skipped, as GradShare skips it
            stacked.add(grad, idx)
            for i, share in enumerate(alone):
                share.add(grad[i], idx[i])
        for mine, theirs in zip(stacked.epoch(), [s.epoch() for s in alone]):
            assert mine.keys() == theirs.keys()
            for key in theirs:
                assert math.isclose(mine[key], theirs[key], rel_tol=1e-5), (shape, key)


def test_a_users_model_runs_through_vmap_and_equals_its_runs_alone(make_cfg, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "user_pkg"))
    alone, stacked, form = alone_and_stacked(
        make_cfg, ["data=outliers", "model._target_=my_pkg.models.TinyNet", "+model.hidden=8", "trainer.epochs=3"], seeds=(0, 1)
    )
    assert_same(alone, stacked)


class Branchy(torch.nn.Module):
    """A model whose forward branches on its data: torch.vmap cannot batch it."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(10, 1)

    def forward(self, x):
        return self.layer(x) if x.sum() > 0 else -self.layer(x)


def test_what_cannot_be_stacked_says_why(make_cfg):
    assert "model.dropout=0.2" in refusal(make_cfg("data=imbalanced", "model=mlp", "model.dropout=0.2"))
    assert "trainer.precision=bf16" in refusal(make_cfg("trainer.precision=bf16"))
    assert refusal(make_cfg("data=outliers")) is None
    a, b = (prepare(make_cfg("data=outliers", f"data.n_features={k}")) for k in (10, 12))
    with pytest.raises(NotStackable, match="shapes differ"):
        check_members([Member(p.model, p.criterion, p.data, 0) for p in (a, b)])
    with pytest.raises(NotStackable, match="torch.vmap cannot run the model: "):
        check_members([Member(Branchy(), a.criterion, a.data, s) for s in (0, 1)])


def test_convolutional_models_on_a_cpu_run_one_by_one(make_cfg):
    from harness.stack_jobs import Stack

    seg = [make_cfg("data=segmentation", "data.n_train=16", "data.n_val=8", "data.n_test=8", f"seed={s}") for s in (0, 1)]
    with pytest.raises(NotStackable, match="convolutions stacked by torch.vmap are slower than one by one on a CPU"):
        Stack(seg, None).build()


def test_plan_groups_jobs_that_differ_in_seed_and_numeric_settings(make_cfg):
    v = "trainer.vectorize=true"
    cfgs = [
        make_cfg(v, "loss=huber", "seed=0"), make_cfg(v, "loss=mae", "seed=0"), make_cfg(v, "loss=huber", "seed=1"),
        make_cfg(v, "loss=huber", "loss.delta=2.0", "data.outlier_fraction=0.3", "seed=2"), make_cfg("loss=huber", "seed=3"),
        make_cfg(v, "loss=huber", "optim.lr=0.1", "seed=4"), make_cfg(v, "model=mlp", "model.dropout=0.1"),
    ]
    order, alone = plan(cfgs)
    assert order == [[0, 2, 3], [1], [4], [5], [6]]
    assert set(alone) == {1, 5, 6} and "dropout" in alone[6]
    assert stack_key(cfgs[0]) == stack_key(cfgs[3]) != stack_key(cfgs[5])
    capped = [make_cfg(v, "trainer.max_stack=2", f"seed={s}") for s in range(5)]
    assert plan(capped)[0] == [[0, 1], [2, 3], [4]]


def test_vectorize_and_max_stack_are_validated(make_cfg):
    from harness.config import ConfigError, validate

    with pytest.raises(ConfigError, match=r"trainer.vectorize='yes' is not allowed: .* one of \[True, False\]"):
        validate(make_cfg("trainer.vectorize=yes"))
    with pytest.raises(ConfigError, match="trainer.max_stack=1 is not allowed"):
        validate(make_cfg("trainer.max_stack=1"))


def sweep(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HARNESS_PARENT_RUN_ID", "HYDRA_FULL_ERROR")}
    return subprocess.run(
        [sys.executable, "-m", "harness", "-m", "trainer.progress=false", "tracking.log_plots=false", "trainer.epochs=3", *overrides],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )


def child_runs(cwd: Path) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")
    exp = client.get_experiment_by_name("loss-harness")
    return [r for r in client.search_runs([exp.experiment_id], max_results=1000) if r.data.tags.get("sweep") != "parent"]


def test_a_vectorized_sweep_logs_each_member_as_its_own_run_with_the_results_of_a_plain_sweep(tmp_path):
    stacked_dir, plain_dir = tmp_path / "stacked", tmp_path / "plain"
    stacked_dir.mkdir(), plain_dir.mkdir()
    swept = ["loss=huber,mae", "seed=0,1,2", "trainer.grad_share=true"]
    stacked = sweep(stacked_dir, "trainer.vectorize=true", *swept)
    assert stacked.returncode == 0, stacked.stderr[-3000:]
    assert "vectorize: jobs #0-#2 train together (3 runs in one loop)" in stacked.stderr
    assert "vectorize: jobs #3-#5 train together (3 runs in one loop)" in stacked.stderr
    assert "sweep: 6 of 6 jobs finished" in stacked.stdout
    plain = sweep(plain_dir, *swept)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert "vectorize" not in plain.stderr
    runs = {d: {(r.data.tags["loss"], r.data.tags["seed"]): r for r in child_runs(d)} for d in (stacked_dir, plain_dir)}
    assert set(runs[stacked_dir]) == set(runs[plain_dir]) and len(runs[stacked_dir]) == 6
    client = MlflowClient(tracking_uri=f"sqlite:///{stacked_dir / 'mlflow.db'}")
    plain_client = MlflowClient(tracking_uri=f"sqlite:///{plain_dir / 'mlflow.db'}")
    for key, run in runs[stacked_dir].items():
        other = runs[plain_dir][key]
        assert run.info.status == "FINISHED" and run.data.tags["vectorize.members"] == "3"
        assert float(run.data.tags["vectorize.loop_s"]) > 0
        assert run.data.tags["mlflow.parentRunId"]
        metrics = {k: v for k, v in other.data.metrics.items() if not k.startswith("time/")}
        assert metrics.keys() <= run.data.metrics.keys()
        for name, value in metrics.items():
            assert math.isclose(run.data.metrics[name], value, rel_tol=RTOL, abs_tol=ATOL), (key, name)
        curve = [m.value for m in client.get_metric_history(run.info.run_id, "val/rmse")]
        assert curve == pytest.approx([m.value for m in plain_client.get_metric_history(other.info.run_id, "val/rmse")], rel=RTOL)
        assert len(curve) == 3
        assert "grad_share/outliers" in run.data.metrics

    from harness import reproduce

    one = runs[stacked_dir][("huber", "1")]
    assert reproduce.main([one.info.run_id, "--tracking-uri", f"sqlite:///{stacked_dir / 'mlflow.db'}"]) == 0


def test_a_sweep_member_that_fails_ends_failed_alone_and_unstackable_jobs_run_one_by_one(tmp_path):
    proc = sweep(tmp_path, "trainer.vectorize=true", "loss=mse", "data.outlier_scale=25,1e30", "seed=0,1")
    assert proc.returncode == 1
    assert "vectorize: jobs #0-#3 train together (4 runs in one loop)" in proc.stderr
    assert "error: run FAILED: non-finite training loss" in proc.stderr
    runs = child_runs(tmp_path)
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert len(runs) == 4 and len(failed) == 2
    assert all(r.data.params["data.outlier_scale"] == "1e+30" for r in failed)
    assert all(r.data.tags["failed_in"] == "loss" and r.data.tags["failed_epoch"] == "1" for r in failed)
    assert "sweep: 2 of 4 jobs finished" in proc.stdout

    alone_dir = tmp_path / "dropout"
    alone_dir.mkdir()
    proc = sweep(alone_dir, "trainer.vectorize=true", "data=imbalanced", "data.n_samples=2000", "model.dropout=0.2", "seed=0,1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "vectorize: job #0 runs alone: model.dropout=0.2" in proc.stderr
    assert [r.info.status for r in child_runs(alone_dir)] == ["FINISHED", "FINISHED"]


@pytest.mark.skipif(torch.get_num_threads() < 2, reason="needs 2 or more CPU threads")
def test_a_stacks_thread_count_holds_for_its_group_only(tmp_path):
    proc = sweep(tmp_path, "trainer.vectorize=true", "loss=mse", "trainer.threads=1,null", "seed=0,1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "vectorize: jobs #0, #1 train together" in proc.stderr and "vectorize: jobs #2, #3 train together" in proc.stderr
    threads = {(r.data.params["trainer.threads"], r.data.tags["torch.threads"]) for r in child_runs(tmp_path)}
    assert threads == {("1", "1"), ("None", str(torch.get_num_threads()))}


def test_job_lists_are_written_as_ranges():
    from hydra_plugins.harness_launcher.launcher import job_list

    assert job_list([0, 1, 2, 3, 7, 9, 10]) == "#0-#3, #7, #9, #10"
    assert job_list([5]) == "#5"


def test_other_launchers_say_they_run_each_job_alone(tmp_path):
    proc = sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.vectorize=true", "seed=0,1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "note: trainer.vectorize=true stacks jobs under the harness's own launcher" in proc.stderr
    assert len(child_runs(tmp_path)) == 2


def test_an_error_in_the_loop_fails_every_member_and_each_job_reports_it(make_cfg, store, monkeypatch):
    from harness import stack_jobs

    stack = stack_jobs.Stack([make_cfg("trainer.epochs=1", f"seed={s}") for s in (0, 1)], None)
    stack.build()

    def boom(members, cfg):
        raise RuntimeError("boom in the loop")

    monkeypatch.setattr(stack_jobs, "fit_stacked", boom)
    with pytest.raises(RuntimeError, match="boom in the loop"):
        stack.train()
    client = MlflowClient(tracking_uri=store)
    for o in stack.opened:
        run = client.get_run(o.run.run_id)
        assert run.info.status == "FAILED" and run.data.tags["failure_reason"] == "RuntimeError: boom in the loop"
    with pytest.raises(RuntimeError, match="boom in the loop"):
        stack.finish(1)


def test_runs_whose_jobs_never_finish_them_end_killed(make_cfg, store):
    from harness.stack_jobs import Stack

    stack = Stack([make_cfg("trainer.epochs=2", f"seed={s}") for s in (0, 1)], None)
    stack.build()
    stack.train()
    assert not math.isnan(stack.finish(0))
    stack.abandon()  # the sweep was interrupted before job 1 ran
    client = MlflowClient(tracking_uri=store)
    first, second = (client.get_run(o.run.run_id) for o in stack.opened)
    assert first.info.status == "FINISHED" and first.data.metrics["test/rmse"] > 0
    assert second.info.status == "KILLED" and second.data.tags["failure_reason"] == "interrupted before its job finished"


def test_a_store_failing_part_way_leaves_no_run_behind(make_cfg, store, monkeypatch):
    from harness import stack_jobs
    from harness.tracking import TrackingError

    real, calls = stack_jobs.start, []

    def flaky(p, parent):
        calls.append(p)
        if len(calls) == 2:
            raise TrackingError("store went away")
        return real(p, parent)

    monkeypatch.setattr(stack_jobs, "start", flaky)
    stack = stack_jobs.Stack([make_cfg("trainer.epochs=1", f"seed={s}") for s in (0, 1)], None)
    with pytest.raises(TrackingError):
        stack.build()
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("loss-harness")
    assert client.search_runs([experiment.experiment_id]) == []  # the one created was deleted: the jobs run one by one


def test_a_users_loss_module_is_called_per_member(make_cfg):
    from harness.vectorize import shared_loss

    built = [prepare(make_cfg("loss._target_=torch.nn.HuberLoss", f"+loss.delta={d}", f"seed={s}")) for s, d in ((0, 0.5), (1, 5.0))]
    members = [Member(p.model, p.criterion, p.data, s) for s, p in enumerate(built)]
    assert shared_loss(members) == "the loss holds modules"
    assert loss_form(_loss_function(members)) == "looped"
