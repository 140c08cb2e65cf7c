"""python -m harness.compare and python -m harness.reproduce on real runs in a real store."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from harness import compare, reproduce
from harness.run import execute
from harness.train import NonFiniteLoss


def test_compare_table_over_seeds_with_a_failed_run(make_cfg, store, tmp_path, capsys):
    results = {}
    for loss in ("mse", "huber"):
        for seed in (0, 1, 2):
            results[loss, seed] = execute(make_cfg(f"loss={loss}", f"seed={seed}", "trainer.epochs=20"))
    with pytest.raises(NonFiniteLoss):
        execute(make_cfg("loss=mse", "seed=3", "data.outlier_scale=1e30"))  # a FAILED run: counted, not dropped
    out = tmp_path / "cmp"
    assert compare.main(["--experiment", "loss-harness", "--tracking-uri", store, "--out", str(out)]) == 0
    table = pd.read_csv(out / "comparison.csv")
    assert list(table["loss"]) == ["huber", "mse"]  # best first: lower RMSE
    huber = [results["huber", s].test["rmse"] for s in range(3)]
    mean = sum(huber) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in huber) / 2)
    row = table.iloc[0]
    assert row["mean"] == pytest.approx(mean) and row["std"] == pytest.approx(std) and row["n"] == 3 and row["failed"] == 0
    assert table.iloc[1]["n"] == 3 and table.iloc[1]["failed"] == 1
    assert f"| huber | {mean:.4f} ± {std:.4f} | 3 | 0 |" in (out / "comparison.md").read_text()
    assert (out / "bars.png").read_bytes()[:4] == b"\x89PNG" and (out / "curves.png").stat().st_size > 10_000
    assert "best first (lower is better)" in capsys.readouterr().out
    # curves: one panel per validation curve; test-only metrics (coef_error) and best/ (val/rmse again) add none
    import matplotlib.image

    one = matplotlib.image.imread(out / "curves.png").shape[1]
    both = tmp_path / "both"
    assert compare.main(["--experiment", "loss-harness", "--tracking-uri", store, "--out", str(both),
                         "--metric", "test/rmse,test/coef_error,best/rmse"]) == 0
    assert matplotlib.image.imread(both / "curves.png").shape[1] == one
    assert matplotlib.image.imread(both / "bars.png").shape[1] > one  # three bar panels


def test_compare_by_a_config_key_and_higher_is_better(make_cfg, store, tmp_path):
    for frac in (0.0, 0.3):
        execute(make_cfg("loss=mae", f"data.outlier_fraction={frac}", "trainer.epochs=10"))
    out = tmp_path / "cmp"
    compare.main(["--experiment", "loss-harness", "--tracking-uri", store, "--by", "loss,data.outlier_fraction",
                  "--metric", "test/rmse", "--out", str(out)])
    table = pd.read_csv(out / "comparison.csv")
    assert sorted(table["data.outlier_fraction"]) == [0.0, 0.3]
    assert compare.lower_is_better("test/rmse") and not compare.lower_is_better("test/pr_auc")
    assert not compare.lower_is_better("test/accuracy") and compare.lower_is_better("test/ece")
    assert compare.has_direction("best/ece") and not compare.has_direction("grad_share/flipped")


def test_runs_of_another_task_in_the_experiment_are_not_counted_as_failed(make_cfg, store, tmp_path):
    execute(make_cfg("loss=mae", "trainer.epochs=5"))
    execute(make_cfg("data=imbalanced", "loss=bce", "trainer.epochs=2"))  # FINISHED, but has no test/rmse
    out = tmp_path / "cmp"
    compare.main(["--experiment", "loss-harness", "--tracking-uri", store, "--metric", "test/rmse", "--out", str(out)])
    table = pd.read_csv(out / "comparison.csv")
    assert list(table["loss"]) == ["mae"] and list(table["failed"]) == [0] and list(table["n"]) == [1]


def test_reproduce_defaults_to_exact_on_cpu_1e5_for_stacked_runs_and_warns_for_cuda_runs():
    assert reproduce.default_tolerance({}, {"device": "cpu"}) == (0.0, "")
    tolerance, note = reproduce.default_tolerance({"vectorize.members": "16"}, {"device": "cpu"})
    assert tolerance == 1e-5 and "stack of 16 runs" in note and "CUDA" not in note
    tolerance, note = reproduce.default_tolerance({}, {"device": "cuda:0"})
    assert tolerance == 0.0 and "trained on CUDA" in note and "--tolerance" in note
    tolerance, note = reproduce.default_tolerance({"vectorize.members": "4"}, {"device": "cuda:0"})
    assert tolerance == 1e-5 and "stack of 4 runs" in note and "; it was trained on CUDA" in note


def test_reproduce_matches_exactly_and_detects_a_difference(make_cfg, store, capsys):
    original = execute(make_cfg("loss=huber", "model=mlp", "trainer.epochs=5", "seed=2"))
    assert reproduce.main([original.run_id, "--tracking-uri", store]) == 0
    out = capsys.readouterr().out
    assert "all test metrics match" in out and "test/rmse" in out
    client = MlflowClient(tracking_uri=store)
    repro = [r for r in client.search_runs([original.experiment_id]) if r.data.tags.get("reproduces") == original.run_id]
    assert len(repro) == 1 and repro[0].data.metrics["test/rmse"] == original.test["rmse"]
    client.log_metric(original.run_id, "test/rmse", original.test["rmse"] + 0.01, step=5)  # tamper with the record
    assert reproduce.main([original.run_id, "--tracking-uri", store]) == 1
    assert "DIFFERS" in capsys.readouterr().out


@pytest.mark.skipif(torch.get_num_threads() < 2, reason="needs 2 or more CPU threads")
def test_reproduce_re_runs_on_the_originals_cpu_thread_count(make_cfg, store, capsys):
    """On this machine the MLP's test RMSE differs in the 10th digit between 1 and 2 threads (sums split by thread)."""
    default = torch.get_num_threads()
    overrides = ("loss=huber", "model=mlp", "trainer.epochs=5", "seed=2", "trainer.device=cpu")
    try:
        torch.set_num_threads(1)
        original = execute(make_cfg(*overrides))
        torch.set_num_threads(default)
        client = MlflowClient(tracking_uri=store)
        assert client.get_run(original.run_id).data.tags["torch.threads"] == "1"
        assert reproduce.main([original.run_id, "--tracking-uri", store]) == 0
        captured = capsys.readouterr()
        assert f"note: {original.run_id} ran on 1 CPU threads (this machine's default: {default}); it is re-run on 1" in captured.err
        assert "all test metrics match" in captured.out
        assert torch.get_num_threads() == default  # the re-run set 1 thread for itself only
        client.delete_tag(original.run_id, "torch.threads")  # a run from before the tag: said, re-run on the default
        reproduce.main([original.run_id, "--tracking-uri", store])
        assert f"note: {original.run_id} did not record its CPU thread count" in capsys.readouterr().err
        if execute(make_cfg(*overrides)).test["rmse"] == original.test["rmse"]:
            pytest.skip(f"this machine's kernels give the same digits on 1 and {default} threads")
        client.set_tag(original.run_id, "torch.threads", str(default))  # as if it had run on this machine's default
        assert reproduce.main([original.run_id, "--tracking-uri", store]) == 1
        assert "DIFFERS" in capsys.readouterr().out
    finally:
        torch.set_num_threads(default)


def test_select_tunes_a_setting_per_arm_and_condition_on_validation(make_cfg, store, tmp_path, capsys):
    """Real runs: huber and mse at two learning rates x two outlier fractions x 2 seeds; --select optim.lr keeps,
    per arm and fraction, the rate with the lower mean val/rmse, and the table compares only those runs."""
    for loss in ("mse", "huber"):
        for lr in (0.001, 0.03):
            for fraction in (0.0, 0.3):
                for seed in (0, 1):
                    execute(make_cfg(f"loss={loss}", f"optim.lr={lr}", f"data.outlier_fraction={fraction}", f"seed={seed}",
                                     "trainer.epochs=8", "tracking.experiment=lr"))
    runs = compare.where(compare.load_runs("lr", store, None), None)
    kept, chosen = compare.select(runs, "optim.lr", "val/rmse", ["loss", "data.outlier_fraction"])
    assert len(kept) == 8
    for (loss, fraction), group in runs.groupby(["tags.loss", "params.data.outlier_fraction"]):
        means = group.groupby("params.optim.lr")["metrics.val/rmse"].mean()
        best = means.idxmin()
        mine = kept[(kept["tags.loss"] == loss) & (kept["params.data.outlier_fraction"] == fraction)]
        assert set(mine["params.optim.lr"]) == {best}
        assert f"| {loss} | {fraction} | {best} | 0.001: {compare._num(means['0.001'])}, 0.03: {compare._num(means['0.03'])} |" in chosen

    assert compare.main(["--experiment", "lr", "--tracking-uri", store, "--by", "loss", "--columns", "data.outlier_fraction",
                         "--select", "optim.lr", "--metric", "test/rmse", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "optim.lr chosen per arm on validation:" in printed
    assert (tmp_path / "out" / "selected.md").read_text().strip() == chosen
    table = pd.read_csv(tmp_path / "out" / "comparison.csv")
    assert set(table["n"]) == {4}  # 2 fractions x 2 seeds per arm: one rate each


def test_select_ranks_a_value_with_failed_runs_last():
    runs = pd.DataFrame({
        "run_id": list("abcd"), "status": ["FINISHED", "FAILED", "FINISHED", "FINISHED"],
        "tags.loss": ["mse"] * 4, "params.optim.lr": ["0.1", "0.1", "0.01", "0.01"],
        "metrics.val/rmse": [0.5, math.nan, 0.9, 0.8],
    })
    kept, chosen = compare.select(runs, "optim.lr", "val/rmse", ["loss"])
    assert list(kept["run_id"]) == ["c", "d"]
    assert "| mse | 0.01 | 0.01: 0.8500, 0.1: 0.5000 (1 failed) |" in chosen
    with pytest.raises(SystemExit, match=r"--select-on val/mae: no such metric in these runs; choose one of \['val/rmse'\]"):
        compare.select(runs, "optim.lr", "val/mae", ["loss"])
    # a diagnostic says where the gradient went, not which value is better: it cannot choose one
    shares = runs.assign(**{"metrics.grad_share/outliers": [0.9, math.nan, 0.2, 0.3]})
    with pytest.raises(SystemExit, match=r"--select-on grad_share/outliers: a diagnostic .*; choose one of \['val/rmse'\]"):
        compare.select(shares, "optim.lr", "grad_share/outliers", ["loss"])
